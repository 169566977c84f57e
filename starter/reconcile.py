"""How a reconciliation run starts: the weekly schedule's row and an on-demand start.

The config (config/reconcile.py) is read and validated here, at start; it travels in the workflow input, so each
run's history records what it trusted.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from config.reconcile import ReconcileConfig, load_reconcile_config
from config.registry import Registry
from config.settings import Settings
from workflows.reconcile.models import ReconcileInput, ReconcileSummary, reconcile_workflow_id


def reconcile_schedule(settings: Settings, registry: Registry) -> Schedule:
    """The weekly run (a row of starter/schedules.py's table); the config is read now and carried by the schedule."""
    config = load_reconcile_config(settings.reconcile)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "ReconcileWorkflow",
            ReconcileInput(config=config),
            # Temporal appends the scheduled time: reconcile-2025-06-02T02:00:00Z, one execution per week.
            id="reconcile",
            task_queue=settings.task_queue,
            execution_timeout=config.every,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=config.every, offset=config.offset)]),
        # A run still going when the next is due is still finding the same drift: never two at once.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def start_reconcile(
    client: Client, settings: Settings, config: ReconcileConfig, *, dry_run: bool = False, date: str | None = None
) -> WorkflowHandle[object, ReconcileSummary]:
    """Start a run now as `reconcile-<date>`; a finished run of the same day may run again, a running one may not."""
    workflow_id = reconcile_workflow_id(date or datetime.now(UTC).strftime("%Y-%m-%d"), dry_run=dry_run)
    return await client.start_workflow(
        "ReconcileWorkflow",
        ReconcileInput(config=config, dry_run=dry_run),
        id=workflow_id,
        task_queue=settings.task_queue,
        result_type=ReconcileSummary,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
