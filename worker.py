"""The worker process: registers every workflow and activity and runs until signalled.

Secrets (ServiceNow credentials, webhook token, the named secrets of CHANGELOOP_SECRET_NAMES) are read here from the
environment and stay in this process: activities use them, workflows never see them, and the scrubber
(ops/scrub.py) learns every one of them before the first task runs. A secret shorter than 8 characters stops the
worker here.

Each worker process polls two queues: the shared one (`CHANGELOOP_TASK_QUEUE`, or its site's) and one of its own,
`<queue>@<host>-<random>`, which only it polls (Temporal's worker-specific task queue pattern). A reconciliation
run sends the stages that touch its files there, so workers share no disk (workflows/reconcile/workflow.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum, Worker

from activities import processes
from activities.budget import BudgetInterceptor
from activities.catalog import (
    central_activities,
    pipeline_activities,
    site_activities,
    site_own_activities,
    worker_secrets,
)
from activities.reconcile.pipeline import ReconcileActivities
from config.registry import Registry, load_registry
from config.secrets import NamedSecrets
from config.settings import Settings, get_settings
from ops import scrub
from ops.connect import connect
from ops.health import HealthServer
from ops.interceptors import ChangeloopInterceptor
from ops.logs import configure_logging, core_logging, get_logger
from ops.metrics import CountingTransport
from ops.metrics import declare as declare_counters
from servicenow.client import ServiceNowClient
from workflows.catalog import WORKFLOW_INTERCEPTORS, WORKFLOWS
from workflows.reconcile.models import PipelineWorker
from workflows.site.models import site_queue, site_slug


def own_queue(task_queue: str) -> str:
    """This process's own queue: `<task queue>@<host>-<8 hex>`, new at every start (a restarted process holds none
    of its predecessor's files, so it must not receive their stages). '@' never appears in a site's queue."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname())[:63] or "host"
    return f"{task_queue}@{host}-{uuid.uuid4().hex[:8]}"


class WorkerGroup:
    """The workers of one process, started and stopped together: the shared queue's (`task_queue`) and the
    process's own (`own_queue`). Behaves as one `Worker` for `async with`, `run()` and the health probes."""

    def __init__(self, shared: Worker, own: Worker) -> None:
        self.shared, self.own = shared, own
        self._workers = (shared, own)

    @property
    def task_queue(self) -> str:
        return self.shared.task_queue

    @property
    def own_queue(self) -> str:
        return self.own.task_queue

    @property
    def is_running(self) -> bool:
        return all(w.is_running for w in self._workers)

    @property
    def is_shutdown(self) -> bool:
        return any(w.is_shutdown for w in self._workers)

    async def run(self) -> None:
        """Until shut down; a fatal error of either stops the other and is raised."""
        tasks = [asyncio.create_task(w.run()) for w in self._workers]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            await self.shutdown()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self._workers))

    async def __aenter__(self) -> WorkerGroup:
        await self.shared.__aenter__()
        try:
            await self.own.__aenter__()
        except BaseException:
            await self.shared.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.own.__aexit__(*exc)
        finally:
            await self.shared.__aexit__(*exc)


def _own_worker(client: Client, task_queue: str, activities: list[Any]) -> Worker:
    """The process's own queue: a handful of sequential stages per run, so two pollers are plenty."""
    return Worker(
        client,
        task_queue=task_queue,
        activities=activities,
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(2),
        max_concurrent_activities=20,
        # The reconciliation's stages run here: their ServiceNow requests spend the budget at its priority.
        interceptors=[ChangeloopInterceptor(), BudgetInterceptor()],
    )


def _prepare(settings: Settings, registry: Registry) -> NamedSecrets:
    """What every worker does before it takes a task: read its named secrets, teach the scrubber every secret it
    holds (WeakSecret stops it on a short one), and set the environment its child processes inherit."""
    secrets = worker_secrets(settings)
    scrub.install(settings, secrets.values())
    processes.pass_through(settings.child_env)
    unknown = sorted(registry.secret_names() - set(secrets.allowed))
    if unknown:
        # Not fatal: a site's secret may live on that site's workers only; a step that needs it here is refused.
        get_logger("worker").warning("registry names secrets this worker does not list", secrets=unknown)
    return secrets


def build_worker(
    client: Client,
    settings: Settings,
    registry: Registry,
    sn: ServiceNowClient | None = None,
    **options: Any,
) -> WorkerGroup:
    """A worker for the central task queue, and its own queue. The caller owns `sn` if it passes one."""
    secrets = _prepare(settings, registry)
    sn = sn or ServiceNowClient.from_settings(settings)
    own = own_queue(settings.task_queue)
    reconcile = ReconcileActivities(
        sn, settings, secrets, pipeline=PipelineWorker(task_queue=own, identity=client.identity)
    )
    # Autoscaling pollers: ~3x the throughput of the default fixed pollers on two cores (docs/architecture.md, "Throughput").
    options.setdefault("workflow_task_poller_behavior", PollerBehaviorAutoscaling())
    options.setdefault("activity_task_poller_behavior", PollerBehaviorAutoscaling())
    options.setdefault("max_concurrent_activities", 200)
    # Log context and outcome counters for every workflow and activity (ops/interceptors.py), each activity's
    # priority on the ServiceNow request budget (activities/budget.py), then the caller's.
    # A failed production workflow opens its incident (workflows/incident/interceptor.py).
    options["interceptors"] = [
        ChangeloopInterceptor(),
        BudgetInterceptor(),
        *WORKFLOW_INTERCEPTORS,
        *options.get("interceptors", []),
    ]
    declare_counters((client.service_client.config.runtime or Runtime.default()).metric_meter)
    shared = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=central_activities(client, settings, registry, sn, secrets, reconcile=reconcile),
        **options,
    )
    return WorkerGroup(shared, _own_worker(client, own, pipeline_activities(reconcile)))


def build_site_worker(client: Client, settings: Settings, registry: Registry, site: str, **options: Any) -> WorkerGroup:
    """A worker for one site's task queue, `<task queue>-<site>` (`changeloop worker --site`), and its own queue."""
    if not site_slug(site):
        raise ValueError(f"site {site!r} has no letters or digits to name a task queue with")
    secrets = _prepare(settings, registry)
    settings = settings.model_copy(update={"site": site})  # the sources this worker scans are its site's
    options.setdefault("activity_task_poller_behavior", PollerBehaviorAutoscaling())
    options.setdefault("max_concurrent_activities", 200)
    options["interceptors"] = [ChangeloopInterceptor(), BudgetInterceptor(), *options.get("interceptors", [])]
    queue = site_queue(settings.task_queue, site)
    own = own_queue(queue)
    shared = Worker(client, task_queue=queue, activities=site_activities(settings, registry, secrets, own), **options)
    return WorkerGroup(shared, _own_worker(client, own, site_own_activities(settings, secrets, own)))


async def run_worker(
    settings: Settings | None = None,
    registry: Registry | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """The central worker, or with CHANGELOOP_SITE (`changeloop worker --site`) a site worker; with
    CHANGELOOP_METRICS_ADDRESS a Prometheus endpoint, with CHANGELOOP_HEALTH_ADDRESS /healthz and /readyz."""
    settings = settings or get_settings()
    configure_logging(settings.secret_values(), settings.log_level)
    log = get_logger("worker")
    registry = registry or load_registry(settings.runbooks)
    _prepare(settings, registry)  # stops here, before connecting, on a weak or missing secret
    runtime = _runtime(settings)
    client = await connect(settings, runtime=runtime)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests) or no signals here
            pass
    async with contextlib.AsyncExitStack() as stack:
        if settings.site:
            worker = build_site_worker(client, settings, registry, settings.site)
        else:
            meter = (runtime or Runtime.default()).metric_meter
            sn = await stack.enter_async_context(
                ServiceNowClient.from_settings(settings, transport=CountingTransport(meter))
            )
            worker = build_worker(client, settings, registry, sn)
        if settings.health_address:
            await stack.enter_async_context(HealthServer(settings.health_address, *_probes(client, worker)))
        log.info(
            "worker started",
            task_queue=worker.task_queue,
            own_queue=worker.own_queue,
            site=settings.site,
            temporal=settings.temporal_address,
            namespace=settings.temporal_namespace,
            servicenow=None if settings.site else settings.servicenow_url,
            runbooks=registry.source,
            metrics=settings.metrics_address,
            health=settings.health_address,
            encryption=settings.encryption,
            pid=os.getpid(),
        )
        async with worker:
            await stop.wait()
        log.info("worker stopped")


def _runtime(settings: Settings) -> Runtime:
    """Temporal's core logs forwarded into the (scrubbed) Python logging; the Prometheus endpoint when configured."""
    metrics = PrometheusConfig(bind_address=settings.metrics_address) if settings.metrics_address else None
    return Runtime(telemetry=TelemetryConfig(logging=core_logging(), metrics=metrics))


def _probes(client: Client, worker: WorkerGroup) -> tuple[Any, Any]:
    async def live() -> tuple[bool, str]:
        running = worker.is_running and not worker.is_shutdown
        return running, f"task queue {worker.task_queue}" if running else "worker not running"

    async def ready() -> tuple[bool, str]:
        ok, detail = await live()
        if not ok:
            return ok, detail
        serving = await client.service_client.check_health(timeout=timedelta(seconds=2))
        return serving, detail if serving else "Temporal not serving"

    return live, ready


if __name__ == "__main__":
    asyncio.run(run_worker())
