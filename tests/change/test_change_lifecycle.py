"""The change lifecycle on a real dev server with the sandbox over HTTP: the ticket fires the runbook, the runbook
closes the ticket."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from config.settings import Settings
from servicenow.auth import BasicAuth
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import Changes, signed_decision, start
from tests.conftest import ADMIN_USER
from tests.helpers import listed_for_change, listed_runs, wait_for
from workflows.change.models import (
    ApprovalInput,
    ChangeOutcome,
    ChangeStatus,
    DecideInput,
    Decision,
    GateState,
    GateStatus,
)
from workflows.gate.models import ProofKind
from workflows.poll.models import PollInput, PollResult

pytestmark = pytest.mark.usefixtures("worker")


async def test_approved_change_runs_its_runbook_and_closes_successful(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(template="Restart application service")
    handle = await start(temporal_client, settings, change["number"])

    result = await handle.result()

    assert result.outcome == ChangeOutcome.SUCCESSFUL
    ticket = await changes.get(change["sys_id"])
    assert ticket["state"] == "3"
    assert ticket["close_code"] == "successful"
    assert ticket["correlation_id"] == f"change-{change['number']}"
    assert ticket["correlation_display"] == "changeloop"
    url = settings.execution_url(handle.id, handle.run_id)
    assert url in ticket["close_notes"]
    for step in ("stop service", "start service", "health check"):
        assert step in ticket["close_notes"]
    notes = await changes.work_notes(change["sys_id"])
    assert notes[0].startswith(f"Started by changeloop: {url}")
    joined = "\n".join(notes)
    for step in ("stop service", "start service", "health check"):
        assert f"'{step}' succeeded" in joined
    assert "stopping app on payments-api" in joined


async def test_status_query_and_search_attributes_describe_the_change(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(template="Restart application service")
    handle = await start(temporal_client, settings, change["number"])
    await handle.result()

    status = await handle.query("status", result_type=ChangeStatus)
    assert status.phase == "done"
    assert status.runbook == "restart_app_service"
    assert status.progress.done == status.progress.total == 3
    assert [s.name for s in status.steps] == ["stop service", "start service", "health check"]
    assert all(s.ended_at and s.ended_at >= s.started_at for s in status.steps)
    assert status.gate.status == GateStatus.NOT_REQUIRED

    found = await listed_for_change(temporal_client, change["number"], {handle.id})
    assert handle.id in found
    description = await handle.describe()
    attributes = {k.name: v for k, v in description.typed_search_attributes}  # type: ignore[attr-defined]
    assert attributes["Runbook"] == "restart_app_service"
    assert attributes["TicketState"] == "Closed"
    assert attributes["CmdbCi"] == ["payments-api"]


async def test_unknown_template_is_noted_and_nothing_runs(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(category="Unmapped")  # no template, and no runbook for this category
    handle = await start(temporal_client, settings, change["number"])

    result = await handle.result()

    assert result.outcome == ChangeOutcome.NO_RUNBOOK
    ticket = await changes.get(change["sys_id"])
    assert ticket["state"] == "-2", "the ticket stays where it was, for a human"
    assert ticket["correlation_id"] == ""
    notes = await changes.work_notes(change["sys_id"])
    assert len(notes) == 1
    assert "no runbook for no template, category 'Unmapped'" in notes[0]
    history = [e async for e in handle.fetch_history_events()]
    activities = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert "run_step" not in activities and "begin_implementation" not in activities
    assert not any(e.HasField("start_child_workflow_execution_initiated_event_attributes") for e in history)


async def test_failed_step_closes_the_change_unsuccessful_naming_the_step(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(category="Failing")
    handle = await start(temporal_client, settings, change["number"])

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert "migrate schema" in str(failure.value.cause)
    ticket = await changes.get(change["sys_id"])
    assert ticket["state"] == "3"
    assert ticket["close_code"] == "unsuccessful"
    assert "failed at step 'migrate schema'" in ticket["close_notes"]
    assert "relation orders is locked" in ticket["close_notes"]
    status = await handle.query("status", result_type=ChangeStatus)
    assert status.result is not None and status.result.failed_step == "migrate schema"
    assert "never reached" not in [s.name for s in status.steps]


async def _wait_for_gate(handle: Any) -> ChangeStatus:
    async def gate_open() -> ChangeStatus | None:
        status = await handle.query("status", result_type=ChangeStatus)
        return status if status.gate.status == GateStatus.WAITING else None

    return await wait_for(gate_open, timeout=20, message="approval gate open")


async def test_destructive_runbook_waits_and_resumes_on_a_proven_decision(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(template="Run maintenance steps")
    handle = await start(temporal_client, settings, change["number"])
    status = await _wait_for_gate(handle)
    assert status.ticket_state == "Implement"
    assert status.steps == [], "nothing runs before the gate opens"

    # A plain signal proves nothing on a cluster not declared to authorize signals: refused, the gate waits.
    await handle.signal("approve", ApprovalInput(approver="carol.cab", comments="CAB ok"))

    async def refused() -> ChangeStatus | None:
        status = await handle.query("status", result_type=ChangeStatus)
        return status if "refused a decision by carol.cab" in status.gate.waiting_for else None

    status = await wait_for(refused, timeout=20, message="the unproven signal judged")
    assert status.gate.status == GateStatus.WAITING and status.steps == []

    gate = await handle.execute_update(
        "decide", signed_decision(settings, handle.id, "carol.cab", Decision.APPROVED, "CAB ok"), result_type=GateState
    )
    assert gate.status == GateStatus.APPROVED and gate.proof is not None and gate.proof.kind == ProofKind.SHIM
    result = await handle.result()

    assert result.outcome == ChangeOutcome.SUCCESSFUL
    notes = "\n".join(await changes.work_notes(change["sys_id"]))
    assert "Waiting for approval" in notes
    assert "Approved by carol.cab at" in notes and "CAB ok" in notes and "proof: authenticated shim principal" in notes


async def test_decide_update_refuses_an_empty_or_unknown_approver_then_accepts(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(template="Run maintenance steps")
    handle = await start(temporal_client, settings, change["number"])
    await _wait_for_gate(handle)

    with pytest.raises(WorkflowUpdateFailedError) as empty:
        await handle.execute_update("decide", DecideInput(approver=" ", decision=Decision.APPROVED))
    assert "approver must not be empty" in str(empty.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as stranger:
        await handle.execute_update("decide", signed_decision(settings, handle.id, "mallory", Decision.APPROVED))
    assert "not an approver" in str(stranger.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as forged:  # a signature made for another execution
        await handle.execute_update(
            "decide", signed_decision(settings, "change-CHG0000001", "alice.ops", Decision.APPROVED)
        )
    assert "signed for 'change-CHG0000001'" in str(forged.value.cause)

    gate = await handle.execute_update(
        "decide",
        signed_decision(settings, handle.id, "alice.ops", Decision.REJECTED, "not tonight"),
        result_type=GateState,
    )
    assert gate.status == GateStatus.REJECTED
    assert gate.approver == "alice.ops" and gate.decided_at is not None

    result = await handle.result()
    assert result.outcome == ChangeOutcome.REJECTED
    ticket = await changes.get(change["sys_id"])
    # Not implemented: canceled, never walked through Review to Closed as if it had been (issue 13 item 8).
    assert ticket["state"] == "4" and ticket["close_code"] == ""
    assert "Not implemented: rejected by alice.ops: not tonight" in ticket["close_notes"]
    assert "Nothing was run" in ticket["close_notes"]


async def test_gate_closes_the_change_unsuccessful_when_nobody_approves_in_time(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(category="QuickGate")
    handle = await start(temporal_client, settings, change["number"])

    result = await handle.result()

    assert result.outcome == ChangeOutcome.APPROVAL_TIMED_OUT
    ticket = await changes.get(change["sys_id"])
    assert ticket["state"] == "4" and ticket["close_code"] == "", "not implemented: canceled, never Review/Closed"
    assert "no approval within 0:00:02" in ticket["close_notes"]
    with pytest.raises(RPCError, match="already completed"):  # a late approval changes nothing
        await handle.execute_update("decide", DecideInput(approver="alice.ops", decision=Decision.APPROVED))


async def test_poll_starts_approved_changes_and_never_twice(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    by_webhook = await changes.create(template="Restart application service")
    for _ in range(5):  # the Business Rule delivered it five times
        await start(temporal_client, settings, by_webhook["number"])
    only_polled = await changes.create(template="Restart application service")

    poll = await temporal_client.execute_workflow(
        "ChangePollWorkflow",
        PollInput(),
        id=f"poll-test-{only_polled['number']}",
        task_queue=settings.task_queue,
        result_type=PollResult,
    )

    assert only_polled["number"] in poll.started
    assert by_webhook["number"] not in poll.started
    for change in (by_webhook, only_polled):
        runs = await listed_runs(temporal_client, f"change-{change['number']}")
        assert len(runs) == 1, f"{change['number']} ran {len(runs)} times"
        await temporal_client.get_workflow_handle(f"change-{change['number']}").result()
        notes = await changes.work_notes(change["sys_id"])
        assert sum(n.startswith("Started by changeloop") for n in notes) == 1
    # Once closed, a later poll does not find it again.
    again = await temporal_client.execute_workflow(
        "ChangePollWorkflow",
        PollInput(),
        id=f"poll-test-again-{only_polled['number']}",
        task_queue=settings.task_queue,
        result_type=PollResult,
    )
    assert only_polled["number"] not in again.started + again.already_known


async def test_the_gate_finds_a_servicenow_approval_by_itself_while_it_waits(
    temporal_client: Client, settings: Settings, changes: Changes, sandbox_url: str
) -> None:
    """No Business Rule tells this worker (the session sandbox sends no hints): the gate's own poll of the
    change's `sysapproval_approver` records (every second here) finds carol's approval."""
    change = await changes.create(template="Run maintenance steps")
    handle = await start(temporal_client, settings, change["number"])
    await _wait_for_gate(handle)
    async with ServiceNowClient(sandbox_url, BasicAuth(*ADMIN_USER)) as admin:
        carol = await admin.first("sys_user", Query().eq("user_name", "carol.cab"), fields=["sys_id"])
        assert carol is not None
        record = await admin.create(
            "sysapproval_approver", {"sysapproval": change["sys_id"], "approver": carol["sys_id"]}
        )
    async with ServiceNowClient(sandbox_url, BasicAuth("carol.cab", "carol.cab-pw")) as person:
        await person.update("sysapproval_approver", record["sys_id"], {"state": "approved"})

    result = await handle.result()
    assert result.outcome == ChangeOutcome.SUCCESSFUL
    status = await handle.query("status", result_type=ChangeStatus)
    assert status.gate.approver == "carol.cab" and status.gate.proof is not None
    assert (status.gate.proof.kind, status.gate.proof.reference) == (ProofKind.SERVICENOW, record["sys_id"])
