"""Temporal schedules owned by changeloop, kept as one table and reconciled by `changeloop schedules apply`.

`apply` is idempotent: it creates what is missing and rewrites what exists to match the table (interval, action,
overlap policy) while keeping a schedule's paused state and note, because an operator who paused the poll during an
incident must not have it silently resumed by a deploy. Each schedule is described by ID, not found through the
(eventually consistent) list API, so `apply` followed at once by `list` shows the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from config.registry import Registry
from config.settings import Settings
from starter.reconcile import reconcile_schedule
from workflows.poll.models import PollInput
from workflows.reconcile.models import RECONCILE_SCHEDULE

CHANGE_POLL = "changeloop-change-poll"


@dataclass(frozen=True)
class ScheduleDef:
    """One row of the table: an ID (public: operators pause it by name) and how to build it from config."""

    id: str
    description: str
    build: Callable[[Settings, Registry], Schedule]


def _change_poll(settings: Settings, registry: Registry) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "ChangePollWorkflow",
            PollInput(),
            # Temporal appends the scheduled time to this ID, so each poll run is its own execution.
            id=CHANGE_POLL,
            task_queue=settings.task_queue,
            execution_timeout=max(registry.poll.interval, timedelta(minutes=1)),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=registry.poll.interval)]),
        # A poll that overruns its interval is still finding the same changes: never run two at once.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


# Reconciliation schedules join here when they land: one row each, nothing else to change.
SCHEDULES: tuple[ScheduleDef, ...] = (
    ScheduleDef(
        CHANGE_POLL, "starts ChangePollWorkflow: approved standard changes in Scheduled, all pages", _change_poll
    ),
    ScheduleDef(
        RECONCILE_SCHEDULE,
        "starts ReconcileWorkflow weekly: live sources vs the CMDB (config CHANGELOOP_RECONCILE, read at apply)",
        reconcile_schedule,
    ),
)


class Applied(BaseModel):
    id: str
    action: Literal["created", "updated"]


class ScheduleReport(BaseModel):
    id: str
    description: str
    exists: bool
    workflow: str = ""
    every: str = ""
    paused: bool = False
    note: str = ""
    actions_taken: int = 0
    next_run: datetime | None = None


def _select(ids: list[str] | None) -> list[ScheduleDef]:
    if not ids:
        return list(SCHEDULES)
    known = {s.id: s for s in SCHEDULES}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise KeyError(f"unknown schedule(s): {', '.join(unknown)}; changeloop owns: {', '.join(known)}")
    return [known[i] for i in ids]


async def apply(client: Client, settings: Settings, registry: Registry, ids: list[str] | None = None) -> list[Applied]:
    results: list[Applied] = []
    for definition in _select(ids):
        wanted = definition.build(settings, registry)
        try:
            await client.create_schedule(definition.id, wanted)
            results.append(Applied(id=definition.id, action="created"))
            continue
        except ScheduleAlreadyRunningError:
            pass

        def keep_state(current: ScheduleUpdateInput, wanted: Schedule = wanted) -> ScheduleUpdate:
            wanted.state = current.description.schedule.state
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(definition.id).update(keep_state)
        results.append(Applied(id=definition.id, action="updated"))
    return results


async def describe(client: Client, ids: list[str] | None = None) -> list[ScheduleReport]:
    reports: list[ScheduleReport] = []
    for definition in _select(ids):
        try:
            found = await client.get_schedule_handle(definition.id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            reports.append(ScheduleReport(id=definition.id, description=definition.description, exists=False))
            continue
        schedule, info = found.schedule, found.info
        action = schedule.action
        intervals = schedule.spec.intervals
        reports.append(
            ScheduleReport(
                id=definition.id,
                description=definition.description,
                exists=True,
                workflow=str(action.workflow) if isinstance(action, ScheduleActionStartWorkflow) else "",
                every=", ".join(str(i.every) for i in intervals),
                paused=schedule.state.paused,
                note=schedule.state.note or "",
                actions_taken=info.num_actions,
                next_run=info.next_action_times[0] if info.next_action_times else None,
            )
        )
    return reports


async def delete(client: Client, ids: list[str] | None = None) -> list[str]:
    """Delete the named schedules (all of ours by default); answers the IDs that existed. Running executions the
    schedule started are left to finish."""
    deleted: list[str] = []
    for definition in _select(ids):
        try:
            await client.get_schedule_handle(definition.id).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            continue
        deleted.append(definition.id)
    return deleted
