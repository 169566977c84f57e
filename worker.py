"""The worker process: registers every workflow and activity and runs until signalled.

Secrets (ServiceNow credentials, webhook token) are read here from the environment and stay in this process:
activities use them, workflows never see them.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, Worker

from activities.callbacks import CallbackActivities
from activities.hosts import HostActivities
from activities.intake import IntakeActivities
from activities.reconcile import activities as reconcile_activities
from activities.registry import RegistryActivities
from activities.steps import run_step
from activities.tickets import TicketActivities
from activities.wave import WaveActivities
from logs import configure_logging, get_logger
from servicenow.client import ServiceNowClient
from settings import Settings, get_settings
from starter.registry import Registry, load_registry
from starter.temporal import connect
from workflows.change import ChangeRequestWorkflow
from workflows.flow import FlowRunWorkflow
from workflows.patch_host import PatchHostWorkflow
from workflows.poll import ChangePollWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.runbook import RunbookWorkflow
from workflows.wave import PatchWaveWorkflow

WORKFLOWS: Sequence[type] = (
    ChangeRequestWorkflow,
    RunbookWorkflow,
    FlowRunWorkflow,
    ChangePollWorkflow,
    ReconcileWorkflow,
    PatchWaveWorkflow,
    PatchHostWorkflow,
)


def activities_for(client: Client, settings: Settings, registry: Registry, sn: ServiceNowClient) -> list[Any]:
    tickets = TicketActivities(sn, settings)
    intake = IntakeActivities(sn, client, settings)
    lookups = RegistryActivities(registry)
    callbacks = CallbackActivities(settings)
    hosts = HostActivities(registry.hosts, settings)
    wave = WaveActivities(sn, settings)
    return [
        tickets.load_change,
        tickets.begin_implementation,
        tickets.add_work_note,
        tickets.close_change,
        lookups.resolve_runbook,
        lookups.resolve_flow,
        intake.find_approved_changes,
        intake.start_change_workflows,
        callbacks.post_callback,
        run_step,
        *reconcile_activities(sn, settings),
        wave.plan_wave,
        wave.load_wave_page,
        hosts.host_snapshot,
        hosts.host_patch,
        hosts.host_health_check,
        hosts.host_rollback,
        hosts.host_run_action,
    ]


def build_worker(
    client: Client,
    settings: Settings,
    registry: Registry,
    sn: ServiceNowClient | None = None,
    **options: Any,
) -> Worker:
    """A worker for the central task queue. The caller owns `sn` if it passes one."""
    sn = sn or ServiceNowClient.from_settings(settings)
    # Autoscaling pollers: ~3x the throughput of the default fixed pollers on two cores (DESIGN.md §6).
    options.setdefault("workflow_task_poller_behavior", PollerBehaviorAutoscaling())
    options.setdefault("activity_task_poller_behavior", PollerBehaviorAutoscaling())
    options.setdefault("max_concurrent_activities", 200)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=activities_for(client, settings, registry, sn),
        **options,
    )


async def run_worker(
    settings: Settings | None = None,
    registry: Registry | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    settings = settings or get_settings()
    configure_logging(settings.secret_values(), settings.log_level)
    log = get_logger("worker")
    registry = registry or load_registry(settings.runbooks)
    client = await connect(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests) or no signals here
            pass
    async with ServiceNowClient.from_settings(settings) as sn:
        worker = build_worker(client, settings, registry, sn)
        log.info(
            "worker started",
            task_queue=settings.task_queue,
            temporal=settings.temporal_address,
            servicenow=settings.servicenow_url,
            runbooks=registry.source,
            pid=os.getpid(),
        )
        async with worker:
            await stop.wait()
        log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(run_worker())
