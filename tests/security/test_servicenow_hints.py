"""ServiceNow keeps its say over a running change (issue 13 item 5, issue 14 item 3): a user puts the change on hold or
cancels it in ServiceNow, the change-event Business Rule POSTs `/api/servicenow/change/event`, the shim signals
`change-<number>`, which forwards the hint to its runbook: the runbook pauses before its next step until the hold is
released, or runs no further step once canceled. The stack's worker re-reads tickets only hourly, so a reaction
within seconds is the hint's."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import WorkflowHandle

from tests.change.windows import fresh, kill_leftover, release, runbook_status, waiting_for_release
from tests.helpers import wait_for
from tests.security.conftest import ADMIN, Stack
from workflows.change.models import SIGNAL_TICKET_CHANGED, ChangeOutcome, ChangeResult, change_workflow_id
from workflows.runbook.models import runbook_workflow_id


async def _started(stack: Stack, category: str) -> tuple[dict[str, Any], WorkflowHandle[Any, ChangeResult]]:
    """A standard change approved in ServiceNow: the approved-change Business Rule starts it through the shim."""
    change = await stack.changes().create(category=category)
    fresh(change["number"])
    handle = stack.client.get_workflow_handle(change_workflow_id(change["number"]), result_type=ChangeResult)

    async def exists() -> bool:
        try:
            await handle.describe()
        except Exception:
            return False
        return True

    await wait_for(exists, timeout=30, message="the Business Rule started the change")
    return change, handle


CHANGE_EVENT = "/api/servicenow/change/event"


async def _hint_reached_the_runbook(stack: Stack, number: str) -> None:
    """The rule's POST went through the shim and the change forwarded it: the runbook's history holds the signal."""

    async def signaled() -> bool:
        history = await stack.client.get_workflow_handle(runbook_workflow_id(number)).fetch_history()
        return any(
            e.workflow_execution_signaled_event_attributes.signal_name == SIGNAL_TICKET_CHANGED
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
        )

    await wait_for(signaled, timeout=15, interval=0.1, message="the hint reached the runbook")


async def test_a_hold_set_in_servicenow_pauses_the_runbook_through_the_business_rules_hint(stack: Stack) -> None:
    change, handle = await _started(stack, "Release")
    number = change["number"]
    pid = await waiting_for_release(number)
    try:
        async with stack.as_user(ADMIN) as admin:
            await admin.update("change_request", change["sys_id"], {"on_hold": "true", "on_hold_reason": "CAB query"})
        await _hint_reached_the_runbook(stack, number)
        release(number)

        async def held() -> bool:
            status = await runbook_status(stack.client, number)
            return bool(status and status.waiting and status.waiting.phase == "on_hold")

        await wait_for(held, timeout=20, message="the runbook paused before 'last'")
        status = await runbook_status(stack.client, number)
        assert status is not None and [s.name for s in status.steps] == ["first", "wait for release"]
        delivered = await wait_for(
            lambda: stack.answered(CHANGE_EVENT, number),
            timeout=20,
            message="the change-event rule's POST was answered",
        )
        assert delivered and delivered[-1]["body"]["on_hold"] == "true" and delivered[-1]["status"] == 202

        async with stack.as_user(ADMIN) as admin:
            await admin.update("change_request", change["sys_id"], {"on_hold": "false"})
        result = await asyncio.wait_for(handle.result(), timeout=30)
        assert result.outcome == ChangeOutcome.SUCCESSFUL
        assert [s.name for s in result.steps] == ["first", "wait for release", "last"]
    finally:
        release(number)
        kill_leftover(pid)


async def test_a_change_canceled_in_servicenow_stops_its_runbook_through_the_hint_and_opens_no_incident(
    stack: Stack,
) -> None:
    change, handle = await _started(stack, "Release")
    number = change["number"]
    pid = await waiting_for_release(number)
    try:
        async with stack.as_user(ADMIN) as admin:
            await admin.update("change_request", change["sys_id"], {"state": "4", "work_notes": "not this week"})
        delivered = await wait_for(
            lambda: stack.posted(CHANGE_EVENT, number), timeout=10, message="the change-event rule posted"
        )
        assert delivered[-1]["body"]["state"] == "4"
        await _hint_reached_the_runbook(stack, number)
        release(number)

        result = await asyncio.wait_for(handle.result(), timeout=30)
        assert result.outcome == ChangeOutcome.CANCELED_IN_SERVICENOW
        assert [s.name for s in result.steps] == ["first", "wait for release"], "a step ran after the cancel"
        ticket = await stack.sn.get("change_request", change["sys_id"])
        assert ticket["state"] == "4" and ticket["close_code"] == ""
        assert await stack.incidents_for(handle.id) == 0
        assert await stack.incidents_for(runbook_workflow_id(number)) == 0
    finally:
        release(number)
        kill_leftover(pid)
