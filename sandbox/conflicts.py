"""Conflict detection for one change: blackout spans and maintenance windows against its planned window.

From markdown/it-service-management/change-management/c_ConflictDetection.md, configure-conflict-properties.md,
configuring-maintenance-schedules-best-practices.md and t_RunManualConflictDetection.md. The sandbox runs the
checks the properties `change.conflict.blackout` and `change.conflict.ci_maint_sched` turn on, in Basic mode
(the change's own CI, no parents, children or affected CIs):
- Blackout: a schedule of type `blackout` applies to the change when it has no `condition`, or its condition (an
  encoded query over cmdb_ci) matches the change's CI; any occurrence of one of its spans overlapping the planned
  window [start_date, end_date) is a conflict of type `blackout`.
- Maintenance: when the CI has a `maintenance_schedule`, the planned window must lie inside that schedule's
  occurrences; otherwise a conflict of type `not_in_maintenance_window`.
Other active changes on the same CI ("CI already scheduled") are not checked.

A run needs the CI and both planned dates (t_RunManualConflictDetection.md "Before you begin"). It replaces the
change's `conflict` records, sets `conflict_status` (Conflict / No Conflict), `conflict_last_run` and
`outside_maintenance_schedule`. It runs at once (the instance runs it as a job; the answer shapes are the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.query import parse
from sandbox.schedules import Interval, covers, overlapping, parse_time
from sandbox.store import now_string
from sandbox.tables import get_table

if TYPE_CHECKING:
    from sandbox.instance import Instance

Record = dict[str, str]


class ConflictCheckError(Exception):
    """The check cannot start (400): the change lacks what conflict detection needs."""


def planned_window(change: Record) -> Interval:
    start, end = parse_time(change.get("start_date", "")), parse_time(change.get("end_date", ""))
    if not change.get("cmdb_ci") or start is None or end is None:
        raise ConflictCheckError(
            "Conflict detection needs a Configuration item, a Planned start date and a Planned end date"
        )
    if end <= start:
        raise ConflictCheckError("The Planned end date is not after the Planned start date")
    return start, end


def _applies(instance: Instance, schedule: Record, ci: Record) -> bool:
    condition = schedule.get("condition", "")
    if not condition:
        return True
    cmdb_ci = get_table("cmdb_ci")
    assert cmdb_ci is not None
    return parse(cmdb_ci, condition).matches(ci, instance.lookup)


def _spans(instance: Instance, schedule_id: str) -> list[Record]:
    return [r for r in instance.store.rows("cmn_schedule_span") if r.get("schedule") == schedule_id]


def detect(instance: Instance, change: Record) -> list[Record]:
    """The conflicts of the change as `conflict` field values (not stored)."""
    window = planned_window(change)
    ci = instance.lookup("cmdb_ci", change["cmdb_ci"]) or {"sys_id": change["cmdb_ci"]}
    found: list[Record] = []
    for schedule in instance.store.rows("cmn_schedule"):
        if schedule.get("type") != "blackout" or not _applies(instance, schedule, ci):
            continue
        if overlapping(_spans(instance, schedule["sys_id"]), window):
            found.append({"type": "blackout", "schedule": schedule["sys_id"]})
    maintenance = instance.lookup("cmn_schedule", ci.get("maintenance_schedule", ""))
    if maintenance is not None and not covers(_spans(instance, maintenance["sys_id"]), window):
        found.append({"type": "not_in_maintenance_window", "schedule": maintenance["sys_id"]})
    return [{**c, "change": change["sys_id"], "configuration_item": ci["sys_id"]} for c in found]


def run(instance: Instance, change: Record) -> list[Record]:
    """Detect, store the `conflict` records and the change's conflict fields; answers the stored records."""
    conflicts = detect(instance, change)
    now = now_string()
    for old in [r for r in instance.store.rows("conflict") if r.get("change") == change["sys_id"]]:
        instance.delete("conflict", old["sys_id"])
    stored = [instance.create("conflict", {**c, "last_checked": now}, "system", flow=True) for c in conflicts]
    outside = any(c["type"] == "not_in_maintenance_window" for c in conflicts)
    fields = {
        "conflict_status": "Conflict" if conflicts else "No Conflict",
        "conflict_last_run": now,
        "outside_maintenance_schedule": "true" if outside else "false",
    }
    instance.update("change_request", change["sys_id"], fields, "system", flow=True)
    return stored


def stored(instance: Instance, change_id: str) -> list[Record]:
    return [r for r in instance.store.rows("conflict") if r.get("change") == change_id]
