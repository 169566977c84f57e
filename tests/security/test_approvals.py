"""Issue 11, attacks 3 and 4, and how approvals are proven: an early approval by a non-approver is refused and the
runbook waits; a typed approver name is never recorded; a signature the shim did not make, or made for another
execution or long ago, proves nothing; ServiceNow's own approval records decide, by listed approvers only."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import WorkflowUpdateFailedError

from servicenow.query import Query
from tests.changes import signed_decision
from tests.conftest import DECISION_KEY
from tests.helpers import wait_for
from tests.security.conftest import ADMIN, PEOPLE, Stack
from workflows.change.models import ChangeInput, change_workflow_id
from workflows.gate.models import GATE_NOT_PROVEN, ApprovalInput, DecideInput, Decision
from workflows.gate.signing import signed
from workflows.starts import CHANGE_WORKFLOW


async def _status_where(stack: Stack, execution_id: str, what: str, check: Any) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body = await stack.status(execution_id)
        return body if check(body) else None

    return await wait_for(reached, timeout=30, interval=0.1, message=f"{execution_id}: {what}")


def _gate_is(status: str) -> Any:
    return lambda body: (body.get("gate") or {}).get("status") == status


def _closed(body: dict[str, Any]) -> bool:
    return body["status"] not in ("RUNNING", "NOT_STARTED")


async def _standard_maintenance(stack: Stack) -> tuple[dict[str, Any], str]:
    """A pre-approved "Run maintenance steps" change: the sandbox's Business Rule starts its execution."""
    change = await stack.changes().create(template="Run maintenance steps")
    return change, change_workflow_id(change["number"])


async def test_an_early_approval_by_a_non_approver_is_refused_and_the_runbook_waits(stack: Stack) -> None:
    # Signal-with-start: mallory's approval arrives before the runbook (and its approvers) is even known. (The
    # sandbox's Business Rule delivers the change too: whichever start comes first, there is one execution.)
    change = await stack.changes().create(template="Run maintenance steps")
    execution_id = change_workflow_id(change["number"])
    await stack.client.start_workflow(
        CHANGE_WORKFLOW,
        ChangeInput(number=change["number"], source="api"),
        id=execution_id,
        task_queue=stack.settings.task_queue,
        start_signal="approve",
        start_signal_args=[ApprovalInput(approver="mallory", comments="trust me")],
    )
    # The same through the shim, signed as mallory, before the gate opens: kept, judged when it opens, refused.
    async with stack.http("mallory") as mallory:
        early = await mallory.post(f"/api/executions/{execution_id}/approve", json={})
    assert early.status_code == 403, early.text
    assert "'mallory' is not an approver of runbook 'maintenance_steps'" in early.json()["error"]["detail"]

    waiting = await _status_where(stack, execution_id, "gate waiting", _gate_is("waiting"))
    assert waiting["progress"]["done"] == 0 and waiting["gate"]["approver"] == ""
    notes = await stack.work_notes(change["sys_id"])
    assert not any("mallory" in n and "Approved" in n for n in notes)

    # An early approval by a listed approver is kept and counts once the gate opens.
    async with stack.http("alice.ops") as alice:
        ok = await alice.post(f"/api/executions/{execution_id}/approve", json={"comments": "ok"})
    assert ok.status_code == 202, ok.text
    final = await _status_where(stack, execution_id, "closed", _closed)
    assert final["result"]["outcome"] == "successful"
    approved = [n for n in await stack.work_notes(change["sys_id"]) if n.startswith("Approved by")]
    assert len(approved) == 1 and approved[0].startswith("Approved by alice.ops at ")


async def test_a_typed_approver_name_is_never_recorded(stack: Stack) -> None:
    change, execution_id = await _standard_maintenance(stack)
    await _status_where(stack, execution_id, "gate waiting", _gate_is("waiting"))
    path = f"/api/executions/{execution_id}/approve"
    async with stack.http("operator") as operator:
        # Every scope, but not an approver: naming alice is refused, approving as itself is refused.
        typed = await operator.post(path, json={"approver": "alice.ops"})
        assert typed.status_code == 422 and "authenticated principal 'operator'" in typed.json()["error"]["detail"]
        itself = await operator.post(path, json={})
        assert itself.status_code == 403, itself.text
    # The Temporal frontend's own messages name alice, and prove nothing on a cluster not declared to authorize.
    handle = stack.client.get_workflow_handle(execution_id)
    await handle.signal("approve", ApprovalInput(approver="alice.ops"))
    try:
        await handle.execute_update("decide", DecideInput(approver="alice.ops", decision=Decision.APPROVED))
        raise AssertionError("an unsigned decide was accepted")
    except WorkflowUpdateFailedError as refused:
        assert getattr(refused.cause, "type", "") == GATE_NOT_PROVEN
    waiting = await stack.status(execution_id)
    assert waiting["gate"]["status"] == "waiting" and waiting["progress"]["done"] == 0
    notes = "\n".join(await stack.work_notes(change["sys_id"]))
    assert "Approved by" not in notes

    async with stack.http("carol.cab") as carol:
        assert (await carol.post(f"/api/executions/{execution_id}/reject", json={"comments": "no"})).status_code == 202
    final = await _status_where(stack, execution_id, "closed", _closed)
    assert final["result"]["outcome"] == "rejected" and final["gate"]["approver"] == "carol.cab"


async def test_a_signature_the_shim_did_not_make_proves_nothing(stack: Stack) -> None:
    change, execution_id = await _standard_maintenance(stack)
    await _status_where(stack, execution_id, "gate waiting", _gate_is("waiting"))
    handle = stack.client.get_workflow_handle(execution_id)
    now = datetime.now(UTC)
    forgeries = {
        "a guessed key": signed(
            "not-the-key-" + "x" * 32, DecideInput(approver="alice.ops", decision=Decision.APPROVED), execution_id, now
        ),
        "another execution's": signed_decision(stack.settings, "change-CHG0000001", "alice.ops", Decision.APPROVED),
        "an old one": signed(
            DECISION_KEY,
            DecideInput(approver="alice.ops", decision=Decision.APPROVED),
            execution_id,
            now - timedelta(hours=1),
        ),
        "an edited one": signed_decision(stack.settings, execution_id, "mallory", Decision.APPROVED).model_copy(
            update={"approver": "alice.ops"}
        ),
    }
    for name, forged in forgeries.items():
        try:
            await handle.execute_update("decide", forged)
            raise AssertionError(f"{name} signature was accepted")
        except WorkflowUpdateFailedError as refused:
            assert getattr(refused.cause, "type", "") == GATE_NOT_PROVEN, (name, refused.cause)
    assert (await stack.status(execution_id))["gate"]["status"] == "waiting"

    # The real one: the key signed it, the history shows the signature and never the key.
    async with stack.http("alice.ops") as alice:
        assert (await alice.post(f"/api/executions/{execution_id}/approve", json={})).status_code == 202
    await _status_where(stack, execution_id, "closed", _closed)
    for workflow_id in (execution_id, f"runbook-{change['number']}"):
        history = (await stack.client.get_workflow_handle(workflow_id).fetch_history()).to_json()
        assert DECISION_KEY not in history and DECISION_KEY.encode().hex() not in history


# -- ServiceNow's own approval records -----------------------------------------------------------------------------
async def _approve_as(stack: Stack, user: str, approval_sys_id: str, state: str = "approved") -> None:
    async with stack.as_user(PEOPLE[user]) as person:
        await person.update("sysapproval_approver", approval_sys_id, {"state": state})


async def _requested_approvals(stack: Stack, change_sys_id: str) -> dict[str, str]:
    """user_name -> sysapproval_approver sys_id of the change's requested approvals."""
    query = Query().eq("sysapproval", change_sys_id).eq("state", "requested")
    rows = await stack.sn.list(
        "sysapproval_approver", query, fields=["sys_id", "approver"], exclude_reference_link=True
    )
    users = await stack.sn.list("sys_user", Query().in_("sys_id", [r["approver"] for r in rows] or ["none"]))
    names = {u["sys_id"]: u["user_name"] for u in users}
    return {names[r["approver"]]: r["sys_id"] for r in rows}


async def _normal_change_through_its_cab(
    stack: Stack, category: str, assess: list[str], authorize: list[str]
) -> dict[str, Any]:
    """A normal change as ServiceNow approves it: requested (New -> Assess), each stage approved by the people the
    sandbox names for it, then Scheduled by the approval flow, which is what fires the change Business Rule."""
    body = {"number": stack.number(), "type": "normal", "category": category, "short_description": "CAB approved"}
    change = await stack.sn.create("change_request", body)
    async with httpx.AsyncClient(base_url=f"{stack.sandbox_url}/sandbox", timeout=10) as control:
        named = await control.put(f"/approvers/{change['number']}", json={"assess": assess, "authorize": authorize})
        named.raise_for_status()
    await stack.sn.update("change_request", change["sys_id"], {"state": "-4"})  # Request Approval
    for stage in (assess, authorize):
        pending = await _requested_approvals(stack, change["sys_id"])
        assert sorted(pending) == sorted(stage), pending
        for user, approval in pending.items():
            await _approve_as(stack, user, approval)
    ticket = await stack.sn.get("change_request", change["sys_id"], exclude_reference_link=True)
    assert (ticket["state"], ticket["approval"]) == ("-2", "approved"), "the CAB scheduled it"
    return change


async def test_a_normal_change_approved_in_servicenow_by_a_listed_approver_runs(stack: Stack) -> None:
    change = await _normal_change_through_its_cab(stack, "Maintenance", assess=["bob.sre"], authorize=["carol.cab"])
    execution_id = change_workflow_id(change["number"])  # started by the sandbox's Business Rule
    final = await _status_where(stack, execution_id, "closed", _closed)

    assert final["result"]["outcome"] == "successful", final
    gate = final["gate"]
    assert gate["approver"] == "carol.cab" and gate["proof"]["kind"] == "servicenow"
    notes = await stack.work_notes(change["sys_id"])
    approved = [n for n in notes if n.startswith("Approved by")]
    assert len(approved) == 1 and f"sysapproval_approver {gate['proof']['reference']}" in approved[0]
    ticket = await stack.sn.get("change_request", change["sys_id"])
    assert ticket["state"] == "3" and ticket["close_code"] == "successful"


async def test_a_normal_change_approved_by_users_outside_the_list_does_not_run(stack: Stack) -> None:
    # QuickGate: maintenance approvers alice.ops and carol.cab, and a 2 s approval timeout to end the test.
    change = await _normal_change_through_its_cab(stack, "QuickGate", assess=["mallory"], authorize=["bob.sre"])
    execution_id = change_workflow_id(change["number"])
    final = await _status_where(stack, execution_id, "closed", _closed)

    assert final["result"]["outcome"] == "approval_timed_out", final
    assert final["result"]["steps"] == []
    notes = await stack.work_notes(change["sys_id"])
    why = [n for n in notes if "does not count" in n]
    assert len(why) == 1, notes
    assert "bob.sre, mallory" in why[0] and "only alice.ops, carol.cab may approve it" in why[0]
    assert not any(n.startswith("Approved by") for n in notes)
    ticket = await stack.sn.get("change_request", change["sys_id"])
    # Not implemented: canceled, not walked through Review to Closed (issue 13 item 8).
    assert ticket["state"] == "4" and "Nothing was run" in ticket["close_notes"]


async def test_the_approval_rule_hint_makes_the_gate_read_the_records(stack: Stack) -> None:
    """A standard change's destructive runbook, approved on a record an admin added for alice: the approval
    Business Rule's POST makes the gate look (the stack's own poll runs hourly)."""
    change, execution_id = await _standard_maintenance(stack)
    await _status_where(stack, execution_id, "gate waiting", _gate_is("waiting"))
    alice = await stack.sn.first("sys_user", Query().eq("user_name", "alice.ops"), fields=["sys_id"])
    assert alice is not None
    async with stack.as_user(ADMIN) as admin:
        record = await admin.create(
            "sysapproval_approver", {"sysapproval": change["sys_id"], "approver": alice["sys_id"]}
        )
    await _approve_as(stack, "alice.ops", record["sys_id"])

    final = await _status_where(stack, execution_id, "closed", _closed)
    assert final["result"]["outcome"] == "successful"
    assert final["gate"]["proof"] == {"kind": "servicenow", "reference": record["sys_id"]}
    hints = await wait_for(
        lambda: stack.answered("/api/servicenow/approval", change["number"]),
        timeout=20,
        message="the approval rule's POST was answered",
    )
    assert hints and hints[-1]["status"] == 202, json.dumps(hints)


async def test_a_listed_approver_rejecting_in_servicenow_rejects(stack: Stack) -> None:
    change, execution_id = await _standard_maintenance(stack)
    await _status_where(stack, execution_id, "gate waiting", _gate_is("waiting"))
    carol = await stack.sn.first("sys_user", Query().eq("user_name", "carol.cab"), fields=["sys_id"])
    assert carol is not None
    async with stack.as_user(ADMIN) as admin:
        record = await admin.create(
            "sysapproval_approver", {"sysapproval": change["sys_id"], "approver": carol["sys_id"]}
        )
    await _approve_as(stack, "carol.cab", record["sys_id"], state="rejected")

    final = await _status_where(stack, execution_id, "closed", _closed)
    assert final["result"]["outcome"] == "rejected" and final["gate"]["approver"] == "carol.cab"
    assert final["gate"]["proof"]["kind"] == "servicenow"


async def test_changeloop_change_approve_proves_nothing_unless_the_cluster_authorizes_signals(stack: Stack) -> None:
    change, execution_id = await _standard_maintenance(stack)
    await _status_where(stack, execution_id, "gate waiting", _gate_is("waiting"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANGELOOP_")} | {
        "CHANGELOOP_TEMPORAL_ADDRESS": stack.settings.temporal_address,
        "CHANGELOOP_TEMPORAL_NAMESPACE": stack.settings.temporal_namespace,
    }
    argv = [sys.executable, "-m", "starter.cli", "change", "approve", change["number"], "--approver", "alice.ops"]
    ran = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "does not prove who made it" in " ".join(ran.stderr.split())  # rich wraps lines
    assert (await stack.status(execution_id))["gate"]["status"] == "waiting"
    await stack.client.get_workflow_handle(execution_id).terminate("test over")
