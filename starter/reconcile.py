"""How a reconciliation run starts: the weekly schedule's row and an on-demand start.

Runs start by reference: the input names the config (`default`, or a `<name>.yaml` of CHANGELOOP_RECONCILE when it is
a directory) and the worker reads its own copy, pinning the digest it resolved for the rest of the run. The
schedule's interval and offset are read here, at `schedules apply`; the sources are read by the worker at each run,
so editing them needs no re-apply.
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

from config.reconcile import DEFAULT_NAME, load_named_config
from config.registry import Registry
from config.settings import Settings
from workflows.reconcile.models import ReconcileInput, ReconcileSummary, reconcile_workflow_id


def reconcile_schedule(settings: Settings, registry: Registry) -> Schedule:
    """The weekly run (a row of starter/schedules.py's table): it names the `default` config; its interval comes
    from the config as read now."""
    config = load_named_config(settings.reconcile, DEFAULT_NAME)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "ReconcileWorkflow",
            ReconcileInput(config=DEFAULT_NAME),
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
    client: Client,
    settings: Settings,
    config: str = DEFAULT_NAME,
    *,
    digest: str = "",
    dry_run: bool = False,
    date: str | None = None,
) -> WorkflowHandle[object, ReconcileSummary]:
    """Start a run of the worker's config `config` now as `reconcile-<date>` (pinned to `digest` when given); a
    finished run of the same day may run again, a running one may not."""
    workflow_id = reconcile_workflow_id(date or datetime.now(UTC).strftime("%Y-%m-%d"), dry_run=dry_run)
    return await client.start_workflow(
        "ReconcileWorkflow",
        ReconcileInput(config=config, digest=digest, dry_run=dry_run),
        id=workflow_id,
        task_queue=settings.task_queue,
        result_type=ReconcileSummary,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
