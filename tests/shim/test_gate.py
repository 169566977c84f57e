"""A destructive runbook's approval gate, decided through the shim: the caller's principal is the approver, and an
approval hint from ServiceNow is a reason to read the records, not a decision."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from servicenow.client import ServiceNowClient
from starter.devstack.walkthrough import open_standard_change, schedule_preapproved, ticket_report, wait_for_state
from tests.helpers import wait_for
from tests.shim.conftest import assert_envelope, principal_client


async def _start_maintenance_change(api: httpx.AsyncClient, sn: ServiceNowClient, title: str) -> dict[str, Any]:
    """A pre-approved "Run maintenance steps" change delivered to the shim as the Business Rule would deliver it."""
    change = await open_standard_change(sn, "Run maintenance steps", "web-storefront", title)
    await schedule_preapproved(sn, change["sys_id"])
    record = await sn.get("change_request", change["sys_id"], exclude_reference_link=True)
    body = {k: str(v) for k, v in record.items()} | {"std_change_producer_version_name": "Run maintenance steps"}
    response = await api.post("/api/servicenow/change", json=body)
    assert response.status_code == 202, response.text
    execution_id = response.json()["executionId"]
    await gate_waiting(api, execution_id)
    return record | {"execution_id": execution_id}


async def gate_waiting(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    async def waiting() -> dict[str, Any] | None:
        status: dict[str, Any] = (await api.get(f"/api/executions/{execution_id}/status")).json()
        return status if (status.get("gate") or {}).get("status") == "waiting" else None

    return await wait_for(waiting, timeout=30, interval=0.1, message="approval gate waiting")


async def _finished(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        status: dict[str, Any] = (await api.get(f"/api/executions/{execution_id}/status")).json()
        return status if status["status"] != "RUNNING" else None

    return await wait_for(done, timeout=30, interval=0.1, message=f"{execution_id} closed")


async def test_approval_through_the_shim_is_the_callers_and_is_judged(
    api: httpx.AsyncClient, app: FastAPI, worker: None, sn_client: ServiceNowClient
) -> None:
    change = await _start_maintenance_change(api, sn_client, "shim gate: approved by alice through the shim")
    path = f"/api/executions/{change['execution_id']}/approve"

    async with principal_client(app, "alice.ops") as alice, principal_client(app, "mallory") as mallory:
        # A typed name is refused, not recorded: alice cannot approve as carol.
        typed = await alice.post(path, json={"approver": "carol.cab"})
        assert_envelope(typed, 422, "approver", "alice.ops")
        # mallory is authenticated and may decide approvals in general, but is not an approver of this runbook.
        assert_envelope(await mallory.post(path, json={}), 403)

        response = await alice.post(path, json={"comments": "go ahead"})
        assert response.status_code == 202, response.text
        gate = response.json()["gate"]
        assert gate["status"] == "approved" and gate["approver"] == "alice.ops"
        assert gate["proof"] == {"kind": "shim", "reference": "alice.ops"}

        # The gate is decided now: a second decision is the execution's state, not the caller's typo.
        assert_envelope(await alice.post(path, json={}), 409, "approved")

    status = await _finished(api, change["execution_id"])
    assert status["status"] == "COMPLETED" and status["result"]["outcome"] == "successful"
    ticket = await wait_for_state(sn_client, change["sys_id"], {"3"}, within=10)
    assert ticket["close_code"] == "successful"
    notes = (await ticket_report(sn_client, change["sys_id"])).work_notes
    approved = [n for n in notes if n.startswith("Approved by")]
    assert len(approved) == 1 and "alice.ops" in approved[0] and "proof: authenticated shim principal" in approved[0]
    assert not any("carol.cab" in n or "mallory" in n for n in approved)
    # Closed: no decision can reach it any more.
    async with principal_client(app, "alice.ops") as alice:
        assert_envelope(await alice.post(path, json={}), 409)


async def test_servicenow_approval_hint_is_not_a_decision(
    api: httpx.AsyncClient, app: FastAPI, worker: None, sn_client: ServiceNowClient
) -> None:
    change = await _start_maintenance_change(api, sn_client, "shim gate: a hint claims carol rejected")
    hint = {"number": change["number"], "approval": "rejected", "approver": "carol.cab", "comments": "not now"}
    async with principal_client(app, "servicenow") as rule:
        response = await rule.post("/api/servicenow/approval", json=hint)
    assert response.status_code == 202, response.text
    assert response.json() == {
        "executionId": change["execution_id"],
        "signal": "check_approvals",
        "status": "DELIVERED",
    }
    # ServiceNow has no such record: the gate read them and still waits; the body decided nothing.
    status = await gate_waiting(api, change["execution_id"])
    assert status["gate"]["approver"] == ""

    async with principal_client(app, "carol.cab") as carol:
        rejected = await carol.post(f"/api/executions/{change['execution_id']}/reject", json={"comments": "freeze"})
    assert rejected.status_code == 202, rejected.text
    status = await _finished(api, change["execution_id"])
    assert status["result"]["outcome"] == "rejected"
    report = await ticket_report(sn_client, change["sys_id"])
    assert any(n.startswith("Rejected by carol.cab") for n in report.work_notes)
    # After the run: a hint for it is answered, and names the execution's state.
    async with principal_client(app, "servicenow") as rule:
        late = await rule.post("/api/servicenow/approval", json=hint)
    assert late.status_code == 202 and late.json()["status"] == "CLOSED"
