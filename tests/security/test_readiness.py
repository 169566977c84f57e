"""Issue 11, attacks 2 and 5: the webhook's claim is not believed. ServiceNow decides whether a change may run: one
that is not approved, not Scheduled, on hold or of a type its runbook does not run, runs nothing, keeps its state and
gets one work note saying why; a webhook for a change that does not exist opens nothing."""

from __future__ import annotations

from typing import Any

from servicenow.query import Query
from tests.helpers import wait_for
from tests.security.conftest import Stack
from workflows.change.models import ChangeStatus, change_workflow_id


def _claim(record: dict[str, Any], **lies: str) -> dict[str, str]:
    """The body an attacker holding the Business Rules' token posts: the real number and sys_id, and a story."""
    body = {"number": record["number"], "sys_id": record["sys_id"], "state": "-2", "approval": "approved"}
    return body | {"type": "standard", "std_change_producer_version_name": "Run maintenance steps"} | lies


async def _outcome(stack: Stack, execution_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await stack.status(execution_id)
        return body if body["status"] not in ("RUNNING", "NOT_STARTED") else None

    final = await wait_for(done, timeout=30, interval=0.1, message=f"{execution_id} closed")
    assert final["status"] == "COMPLETED", final
    result: dict[str, Any] = final["result"]
    return result


async def _post_change(stack: Stack, body: dict[str, str]) -> str:
    async with stack.http("servicenow") as rule:
        response = await rule.post("/api/servicenow/change", json=body)
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


async def _new_change(stack: Stack, **fields: str) -> dict[str, Any]:
    template = await stack.sn.first("std_change_producer_version", Query().eq("name", "Run maintenance steps"))
    assert template is not None
    body = {"short_description": "attack: unapproved", "std_change_producer_version": template["sys_id"]} | fields
    body["number"] = stack.number()
    return await stack.sn.create("change_request", body)


async def _assert_untouched(stack: Stack, before: dict[str, Any], execution_id: str, reason: str) -> None:
    after = await stack.sn.get("change_request", before["sys_id"], exclude_reference_link=True)
    for field in ("state", "approval", "on_hold", "correlation_id", "close_code"):
        assert after[field] == before[field], f"{field} changed: {before[field]!r} -> {after[field]!r}"
    notes = await stack.work_notes(before["sys_id"])
    assert len(notes) == 1 and notes[0].startswith("changeloop did not run this change:"), notes
    assert reason in notes[0]
    assert await stack.incidents_for(execution_id) == 0


async def test_a_normal_change_not_approved_runs_nothing_whatever_the_webhook_claims(stack: Stack) -> None:
    change = await _new_change(stack, type="normal", category="Maintenance")
    before = await stack.sn.get("change_request", change["sys_id"], exclude_reference_link=True)
    assert before["state"] == "-5" and before["approval"] != "approved"

    execution_id = await _post_change(stack, _claim(change, type="normal"))
    result = await _outcome(stack, execution_id)

    assert result["outcome"] == "not_ready" and result["steps"] == []
    await _assert_untouched(stack, before, execution_id, "not 'approved'")
    assert "state New, not Scheduled" in result["error"]


async def test_a_normal_change_waiting_for_its_cab_is_never_walked_through_assess(stack: Stack) -> None:
    change = await _new_change(stack, type="normal", category="Maintenance")
    # The requester asks for approval (New -> Assess): the approval flow, not changeloop, moves it on from here.
    await stack.sn.update("change_request", change["sys_id"], {"state": "-4"})
    before = await stack.sn.get("change_request", change["sys_id"], exclude_reference_link=True)
    assert before["state"] == "-4" and before["approval"] == "requested"

    execution_id = await _post_change(stack, _claim(change, type="normal"))
    result = await _outcome(stack, execution_id)

    assert result["outcome"] == "not_ready"
    await _assert_untouched(stack, before, execution_id, "'requested', not 'approved'")


async def test_a_change_on_hold_runs_nothing(stack: Stack) -> None:
    # Pre-approved and Scheduled, but on hold: the Business Rule fires, and ServiceNow still says "not now".
    held = {"type": "standard", "state": "-2", "approval": "approved", "on_hold": "true", "on_hold_reason": "vendor"}
    change = await _new_change(stack, **held)
    before = await stack.sn.get("change_request", change["sys_id"], exclude_reference_link=True)
    execution_id = await _post_change(stack, _claim(change))  # the rule's own delivery, or this one: one execution
    result = await _outcome(stack, execution_id)

    assert result["outcome"] == "not_ready"
    await _assert_untouched(stack, before, execution_id, "on hold (vendor)")


async def test_a_webhook_for_a_change_that_does_not_exist_opens_nothing(stack: Stack) -> None:
    incidents_before = await stack.sn.count("incident")
    body = {"number": "CHG9999901", "sys_id": "0" * 32, "approval": "approved", "state": "-2"}
    execution_id = await _post_change(stack, body)
    result = await _outcome(stack, execution_id)

    assert result["outcome"] == "not_found"
    # No incident workflow was started for it, and ServiceNow holds no new incident.
    assert not [w async for w in stack.client.list_workflows(f"WorkflowId = 'incident-for-{execution_id}'")]
    assert await stack.sn.count("incident") == incidents_before


async def test_the_change_event_rule_is_a_recorded_hint(stack: Stack) -> None:
    """Canceled / on hold / rescheduled in ServiceNow: the rule's POST (change:webhook) reaches the change workflow,
    which records it (a later issue acts on it)."""
    change = await stack.changes().create(template="Run maintenance steps")
    execution_id = change_workflow_id(change["number"])

    async def gate_waiting() -> dict[str, Any] | None:
        body = await stack.status(execution_id)
        return body if (body.get("gate") or {}).get("status") == "waiting" else None

    await wait_for(gate_waiting, timeout=30, interval=0.1, message="gate waiting")
    await stack.sn.update("change_request", change["sys_id"], {"on_hold": "true", "on_hold_reason": "vendor"})
    handle = stack.client.get_workflow_handle(execution_id)

    async def recorded() -> ChangeStatus | None:
        status: ChangeStatus = await handle.query("status", result_type=ChangeStatus)
        return status if status.ticket_events else None

    status = await wait_for(recorded, timeout=30, interval=0.1, message="the change event recorded")
    event = status.ticket_events[-1]
    assert (event.number, event.on_hold, event.on_hold_reason) == (change["number"], "true", "vendor")
    await handle.terminate("test over")
