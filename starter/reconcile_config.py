"""Where a reconciliation run comes from: the config file, the weekly schedule's row, and an on-demand start.

The config (`CHANGELOOP_RECONCILE`, default `starter/reconcile.yaml`) is validated when it is read; a bad file
names the field and the line. It travels in the workflow input, so each run's history records what it trusted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import ValidationError
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

from settings import Settings
from starter.registry import Registry, _line_of
from workflows.reconcile_models import (
    RECONCILE_SCHEDULE,
    ReconcileConfig,
    ReconcileInput,
    ReconcileSummary,
    reconcile_workflow_id,
)

DEFAULT_CONFIG = Path(__file__).with_name("reconcile.yaml")


class ReconcileConfigError(ValueError):
    """The reconciliation config is unusable; the message names the file, field and line."""


def load_reconcile_config(path: Path | str | None = None) -> ReconcileConfig:
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReconcileConfigError(f"cannot read reconciliation config {path}: {exc}") from exc
    try:
        return ReconcileConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(text, loc)
            where = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{path}{f':{line}' if line else ''}: {where}: {err['msg']}")
        raise ReconcileConfigError("invalid reconciliation config:\n  " + "\n  ".join(problems)) from exc


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


__all__ = ["RECONCILE_SCHEDULE", "load_reconcile_config", "reconcile_schedule", "start_reconcile"]
