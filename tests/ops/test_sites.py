"""Workers by site: each host operation runs on the worker of its CI's site, started with `changeloop worker --site`.

Two real site-worker processes (the CLI, as an operator starts them inside each site's network) tell themselves
apart by SITE_MARK in their environment, passed on to their child processes (CHANGELOOP_CHILD_ENV); the runbook's
step prints it. The central worker runs the workflows and
the ServiceNow calls, and resolves each CI's site from the CMDB field `location` or the config map.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from activities.site.queues import route_ci, site_task_queue
from config.registry import Registry
from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.changes import Changes, start
from tests.helpers import wait_for
from tests.ops.conftest import OPS_REGISTRY, free_port
from worker import build_worker
from workflows.change.models import ChangeResult
from workflows.runbook.models import runbook_workflow_id
from workflows.site.models import site_slug
from workflows.wave.models import CiRef, HostReport, PatchHostInput, patch_host_workflow_id


class SiteWorker:
    """`changeloop worker --site <site>` in a process of its own, ready once its /readyz answers 200."""

    def __init__(self, settings: Settings, site: str, mark: str, log: Path) -> None:
        self.site, self.mark, self.log = site, mark, log
        self.health = f"http://127.0.0.1:{free_port()}"
        keep = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")}
        self.env = keep | {
            "CHANGELOOP_TEMPORAL_ADDRESS": settings.temporal_address,
            "CHANGELOOP_TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "CHANGELOOP_TASK_QUEUE": settings.task_queue,
            "CHANGELOOP_RUNBOOKS": str(OPS_REGISTRY),
            "CHANGELOOP_SERVICENOW_URL": settings.servicenow_url,
            "CHANGELOOP_HEALTH_ADDRESS": self.health.removeprefix("http://"),
            "SITE_MARK": mark,
            # Children get a minimal environment: the operator passes SITE_MARK on (activities/processes.py).
            "CHANGELOOP_CHILD_ENV": "SITE_MARK",
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        changeloop = Path(sys.executable).with_name("changeloop")
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                str(changeloop),
                "worker",
                "--site",
                self.site,
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=out,
            )

    async def ready(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"site worker {self.site} exited: {self.log.read_text()[-2000:]}")
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"{self.health}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@asynccontextmanager
async def site_workers(settings: Settings, sites: dict[str, str], logs: Path) -> AsyncIterator[list[SiteWorker]]:
    workers = [SiteWorker(settings, site, mark, logs / f"site-{site_slug(site)}.log") for site, mark in sites.items()]
    try:
        await asyncio.gather(*(w.start() for w in workers))
        for w in workers:
            await wait_for(w.ready, timeout=60, interval=0.2, message=f"site worker {w.site} ready")
        yield workers
    finally:
        await asyncio.gather(*(w.stop() for w in workers))


async def run_change(client: Client, settings: Settings, changes: Changes, ci: str) -> tuple[str, ChangeResult]:
    change = await changes.create(category="WhereAmI", ci=ci)
    handle = await start(client, settings, change["number"])
    return change["number"], await handle.result()


async def activity_queues(client: Client, workflow_id: str, activity: str | None = None) -> set[str]:
    """Task queues on which the workflow's activities (of one type) were scheduled, read from its history."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return {
        event.activity_task_scheduled_event_attributes.task_queue.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
        and activity in (None, event.activity_task_scheduled_event_attributes.activity_type.name)
    }


async def step_queues(client: Client, number: str) -> set[str]:
    return await activity_queues(client, runbook_workflow_id(number), "run_step")


def host_id(report: HostReport) -> str:
    return patch_host_workflow_id(PATCH_CHANGE, report.ci)


PATCH_CHANGE = f"CHG9{uuid.uuid4().int % 1_000_000:06d}"


async def patch_host_at(client: Client, settings: Settings, host: str, task_queue: str) -> HostReport:
    """PatchHostWorkflow on the central worker for a CI whose route says `task_queue` (as load_wave_page sets it)."""
    async with httpx.AsyncClient(base_url=f"{settings.servicenow_url}/fleet", timeout=10) as fleet:
        await fleet.post("/reset")
    ci = CiRef(sys_id=uuid.uuid4().hex, name=host, sys_class_name="cmdb_ci_linux_server", task_queue=task_queue)
    return await client.execute_workflow(
        "PatchHostWorkflow",
        PatchHostInput(change_number=PATCH_CHANGE, ci=ci, target_level="2025.06"),
        id=patch_host_workflow_id(PATCH_CHANGE, host),
        task_queue=settings.task_queue,
        result_type=HostReport,
    )


async def test_each_host_operation_runs_on_the_worker_of_its_site(
    temporal_client: Client,
    ops_settings: Settings,
    ops_registry: Registry,
    sn_client: ServiceNowClient,
    tmp_path: Path,
    sandbox: Any,
) -> None:
    # The CMDB says payments-api is in "Frankfurt DC1" and web-storefront in "Dublin DC2"; the map moves
    # reporting-etl to Frankfurt whatever the CMDB says.
    settings = ops_settings.model_copy(
        update={"site_field": "location", "site_map": {"reporting-etl": "frankfurt-dc1"}}
    )
    changes = Changes(sn_client)
    # One worker named as the CMDB writes the site, the other by the queue's slug: both name the same queue.
    async with site_workers(settings, {"Frankfurt DC1": "FRA", "dublin-dc2": "DUB"}, tmp_path):
        async with (
            ServiceNowClient.from_settings(settings) as sn,
            build_worker(temporal_client, settings, ops_registry, sn),
        ):
            host = await patch_host_at(temporal_client, settings, "fleet-17", f"{settings.task_queue}-dublin-dc2")
            runs = await asyncio.gather(
                *(
                    run_change(temporal_client, settings, changes, ci)
                    for ci in ("payments-api", "web-storefront", "reporting-etl")
                )
            )

    details = {
        ci: result.steps[0].detail
        for ci, (_, result) in zip(("payments-api", "web-storefront", "reporting-etl"), runs, strict=True)
    }
    assert details == {
        "payments-api": "ran at FRA for payments-api",
        "web-storefront": "ran at DUB for web-storefront",
        "reporting-etl": "ran at FRA for reporting-etl",
    }
    # The patch wave's host operations follow the queue the wave's CMDB page resolved for the CI.
    assert host.outcome == "patched"
    assert await activity_queues(temporal_client, host_id(host)) == {f"{settings.task_queue}-dublin-dc2"}
    # The choice is in history: a replay, or a site map edited mid-run, cannot send the step elsewhere.
    queues = [await step_queues(temporal_client, number) for number, _ in runs]
    q = settings.task_queue
    assert queues == [{f"{q}-frankfurt-dc1"}, {f"{q}-dublin-dc2"}, {f"{q}-frankfurt-dc1"}]


async def test_without_site_configuration_steps_stay_on_the_central_worker(
    temporal_client: Client, ops_settings: Settings, ops_registry: Registry, sn_client: ServiceNowClient, sandbox: Any
) -> None:
    async with (
        ServiceNowClient.from_settings(ops_settings) as sn,
        build_worker(temporal_client, ops_settings, ops_registry, sn),
    ):
        number, result = await run_change(temporal_client, ops_settings, Changes(sn_client), "payments-api")
    assert result.steps[0].detail == "ran at central for payments-api"
    assert await step_queues(temporal_client, number) == {ops_settings.task_queue}


def test_site_queue_names_follow_the_central_queue(settings: Settings) -> None:
    routed = settings.model_copy(update={"task_queue": "changeloop", "site_field": "u_site"})
    assert site_task_queue(routed, "Frankfurt DC1") == "changeloop-frankfurt-dc1"
    assert site_task_queue(routed, "") == ""
    assert site_task_queue(settings, "Frankfurt DC1") == "", "no site routing configured: the central queue"
    record = {"u_site": {"display_value": "Dublin DC2", "value": "9f1c"}}
    assert route_ci(routed, "web-01", record).task_queue == "changeloop-dublin-dc2"
    mapped = routed.model_copy(update={"site_map": {"web-01": "lab"}})
    assert route_ci(mapped, "web-01", record).site == "lab", "the config map wins over the CMDB field"
