"""What a change implementer does in ServiceNow, as code: open a standard change from a template, approve it, and
read back what changeloop wrote. Used by `changeloop demo` and by the tests; talks to any instance via the Table API.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from servicenow.change_request import Approval, ChangeState, ChangeType
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from servicenow.standard_change import servicenow_time

TICKET_FIELDS = ["sys_id", "number", "state", "close_code", "close_notes", "correlation_id", "correlation_display"]


class DemoFailed(Exception):
    """A demo scenario did not end the way the loop promises; the message says what differed."""


class TicketReport(BaseModel):
    number: str
    sys_id: str
    state: str
    close_code: str = ""
    close_notes: str = ""
    correlation_id: str = ""
    correlation_display: str = ""
    work_notes: list[str] = []


async def open_standard_change(
    sn: ServiceNowClient,
    template: str,
    ci_name: str,
    short_description: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """A standard change in New, from `template` on the application CI `ci_name`, as the change form creates it;
    `start` / `end` are its planned window (UTC)."""
    found = await sn.first("std_change_producer_version", Query().eq("name", template), exclude_reference_link=True)
    if found is None:
        raise LookupError(f"no standard change template named {template!r} in {sn.base_url}")
    ci = await sn.first("cmdb_ci", Query().eq("name", ci_name), exclude_reference_link=True)
    if ci is None:
        raise LookupError(f"no configuration item named {ci_name!r} in {sn.base_url}")
    body = {
        "type": ChangeType.STANDARD.value,
        "state": ChangeState.NEW.value,
        "std_change_producer_version": found["sys_id"],
        "category": found.get("category", ""),
        "cmdb_ci": ci["sys_id"],
        "short_description": short_description,
    }
    if start is not None:
        body["start_date"] = servicenow_time(start)
    if end is not None:
        body["end_date"] = servicenow_time(end)
    return await sn.create("change_request", body)


async def schedule_preapproved(sn: ServiceNowClient, sys_id: str) -> dict[str, Any]:
    """A standard change is pre-approved: the instance moves it to Scheduled with approval=approved, and that
    update is what the changeloop Business Rule fires on."""
    return await sn.update(
        "change_request", sys_id, {"approval": Approval.APPROVED.value, "state": ChangeState.SCHEDULED.value}
    )


async def wait_for_state(
    sn: ServiceNowClient, sys_id: str, states: set[str], within: float, interval: float = 0.5
) -> dict[str, Any]:
    """Poll the ticket until its state is one of `states`; TimeoutError naming the last state otherwise."""
    deadline = time.monotonic() + within
    while True:
        record = await sn.get("change_request", sys_id, fields=TICKET_FIELDS)
        if record.get("state") in states:
            return record
        if time.monotonic() >= deadline:
            state = record.get("state", "?")
            label = ChangeState(state).name if state in ChangeState._value2member_map_ else state
            raise TimeoutError(f"{record.get('number')} still in state {label} after {within:.0f} s")
        await asyncio.sleep(interval)


async def ticket_report(sn: ServiceNowClient, sys_id: str) -> TicketReport:
    record = await sn.get("change_request", sys_id, fields=TICKET_FIELDS)
    notes = await sn.list(
        "sys_journal_field",
        Query().eq("element_id", sys_id).eq("element", "work_notes").order_by("sys_created_on"),
        fields=["value", "sys_created_on"],
    )
    return TicketReport(
        **{k: str(record.get(k, "")) for k in TICKET_FIELDS},
        work_notes=[str(n.get("value", "")) for n in notes],
    )
