"""Is a change allowed to run now by ServiceNow's blackout and maintenance schedules, and if not, from when?

The instance's own conflict detection decides which schedules concern the change (markdown/it-service-management/
change-management/c_ConflictDetection.md): through the Change Management API (`POST change/{sys_id}/conflict`
starts the check, `GET change/{sys_id}/conflict` reads its result, polled until the job is done) where the instance
has it; otherwise through the Table API the way the check itself works: the blackout schedules (`cmn_schedule` of
type blackout) whose `condition` matches the change's CI (an empty condition matches every CI), and the CI's
`maintenance_schedule`. Detection answers whether the *planned window* meets a schedule; the entries of the
schedules it names (`cmn_schedule_span`) then say whether *now* is blocked and when the next allowed moment inside
the window is (servicenow/schedules.py). A change whose window meets no schedule costs the conflict check only.

Conflict detection needs a CI and both planned dates: a change without them is not checked (the workflow asks only
when it has them).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio import activity

from activities.errors import servicenow_errors
from config.settings import Settings
from servicenow.change_api import ChangeApi, ConflictStatus, not_installed
from servicenow.client import ServiceNowClient
from servicenow.errors import BadRequest, Forbidden, NotFound
from servicenow.query import Query
from servicenow.schedules import Schedule, allowed
from workflows import calls
from workflows.change.models import ScheduleFinding, ScheduleQuery

BLACKOUT = "blackout"
NOT_IN_MAINTENANCE = "not_in_maintenance_window"
JOB_DONE = "2"  # GET .../conflict job_status of a finished check (change-management-api.md's samples)
JOB_POLLS = 10


class ScheduleActivities:
    def __init__(self, sn: ServiceNowClient, settings: Settings) -> None:
        self.sn = sn
        self.api = ChangeApi(sn)
        self.mode = settings.change_api
        self._api_present: bool | None = {"on": True, "off": False}.get(settings.change_api)
        self._detected_at = 0.0

    @activity.defn(name=calls.CHECK_SCHEDULES.name)
    async def check_schedules(self, query: ScheduleQuery) -> ScheduleFinding:
        if self.mode == "auto" and self._api_present is False and time.monotonic() - self._detected_at > 600:
            self._api_present = None  # asked again now and then: an instance may get the plugin
        async with servicenow_errors():
            found = await self._by_api(query) if self._api_present is not False else None
            if found is None:
                blackouts, maintenance = await self._by_table(query)
                route = "table_api"
            else:
                blackouts, maintenance = found
                route = "change_api"
            schedules = await self._schedules(blackouts + ([maintenance] if maintenance else []))
        answer = allowed(
            query.at,
            query.planned_end,
            [schedules[s] for s in blackouts if s in schedules],
            schedules.get(maintenance) if maintenance else None,
        )
        return ScheduleFinding(blocked_by=answer.blocked_by, allowed_from=answer.next, checked_with=route)

    # -- which schedules concern the change ------------------------------------------------------------------------
    async def _by_api(self, query: ScheduleQuery) -> tuple[list[str], str] | None:
        """(blackout schedule sys_ids, maintenance schedule sys_id) from the instance's conflict check; None when the
        instance has no Change Management API (then the Table API answers)."""
        try:
            await self.api.start_conflict_check(query.change_sys_id)
        except (BadRequest, NotFound) as error:
            if self.mode == "auto" and not_installed(error):  # not installed (or taken off since it was found)
                self._api_present, self._detected_at = False, time.monotonic()
                return None
            raise
        except Forbidden:
            if self.mode == "auto":
                self._api_present, self._detected_at = False, time.monotonic()
                return None
            raise
        self._api_present = True
        status = await self._finished(query.change_sys_id)
        blackouts: list[str] = []
        maintenance = ""
        for conflict in status.conflicts:
            kind, schedule = conflict.value("type"), conflict.value("schedule")
            if kind == BLACKOUT and schedule and schedule not in blackouts:
                blackouts.append(schedule)
            elif kind == NOT_IN_MAINTENANCE and schedule:
                maintenance = schedule
        return blackouts, maintenance

    async def _finished(self, sys_id: str) -> ConflictStatus:
        """The check runs as a job on a real instance: read its result until the job is done (a bounded wait)."""
        status = await self.api.conflict_status(sys_id)
        for attempt in range(JOB_POLLS):
            if status.ran and status.job_status in ("", JOB_DONE):
                return status
            activity.heartbeat(f"conflict check running ({status.job_status or 'not started'})")
            await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
            status = await self.api.conflict_status(sys_id)
        return status

    async def _by_table(self, query: ScheduleQuery) -> tuple[list[str], str]:
        ci = await self.sn.get("cmdb_ci", query.ci_sys_id, fields=["sys_id", "maintenance_schedule"])
        maintenance = _ref(ci.get("maintenance_schedule"))
        blackouts = []
        candidates = await self.sn.list("cmn_schedule", Query().eq("type", BLACKOUT), fields=["sys_id", "condition"])
        for schedule in candidates:
            condition = str(schedule.get("condition") or "")
            if not condition or await self._matches(query.ci_sys_id, condition):
                blackouts.append(str(schedule["sys_id"]))
        return blackouts, maintenance

    async def _matches(self, ci_sys_id: str, condition: str) -> bool:
        """Whether the schedule's condition (an encoded query over cmdb_ci, stored by the instance) selects the CI."""
        found = await self.sn.first("cmdb_ci", Query().eq("sys_id", ci_sys_id).and_stored(condition), fields=["sys_id"])
        return found is not None

    async def _schedules(self, sys_ids: list[str]) -> dict[str, Schedule]:
        """Each schedule with its entries, in one read of the entries (the schedule's name is their display)."""
        if not sys_ids:
            return {}
        spans = await self.sn.list(
            "cmn_schedule_span", Query().in_("schedule", sys_ids), display_value="all", exclude_reference_link=True
        )
        by_schedule: dict[str, list[dict[str, str]]] = {s: [] for s in sys_ids}
        names: dict[str, str] = {}
        for span in spans:
            schedule = _ref(span.get("schedule"))
            names[schedule] = _shown(span.get("schedule")) or schedule
            by_schedule.setdefault(schedule, []).append({k: _ref(v) for k, v in span.items()})
        return {s: Schedule.of(names.get(s, s), rows) for s, rows in by_schedule.items()}


def _ref(raw: Any) -> str:
    if isinstance(raw, dict):
        return str(raw.get("value") or "")
    return "" if raw is None else str(raw)


def _shown(raw: Any) -> str:
    return str(raw.get("display_value") or "") if isinstance(raw, dict) else ""
