"""A destructive runbook's approval gate, decided through the shim: the `decide` update and the ServiceNow signal."""

from __future__ import annotations

from typing import Any

import httpx

from servicenow.client import ServiceNowClient
from starter.devstack.walkthrough import open_standard_change, schedule_preapproved, ticket_report, wait_for_state
from tests.helpers import wait_for
from tests.shim.conftest import assert_envelope


async def _start_maintenance_change(api: httpx.AsyncClient, sn: ServiceNowClient, title: str) -> dict[str, Any]:
    """A pre-approved "Run maintenance steps" change delivered to the shim as the Business Rule would deliver it."""
    change = await open_standard_change(sn, "Run maintenance steps", "web-storefront", title)
    await schedule_preapproved(sn, change["sys_id"])
    record = await sn.get("change_request", change["sys_id"], exclude_reference_link=True)
    body = {k: str(v) for k, v in record.items()} | {"std_change_producer_version_name": "Run maintenance steps"}
    response = await api.post("/api/servicenow/change", json=body)
    assert response.status_code == 202, response.text
    execution_id = response.json()["executionId"]

    async def gate_waiting() -> dict[str, Any] | None:
        status: dict[str, Any] = (await api.get(f"/api/executions/{execution_id}/status")).json()
        return status if (status.get("gate") or {}).get("status") == "waiting" else None

    await wait_for(gate_waiting, timeout=30, interval=0.1, message="approval gate waiting")
    return record | {"execution_id": execution_id}


async def _finished(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        status: dict[str, Any] = (await api.get(f"/api/executions/{execution_id}/status")).json()
        return status if status["status"] != "RUNNING" else None

    return await wait_for(done, timeout=30, interval=0.1, message=f"{execution_id} closed")


async def test_approve_through_the_decide_update_validates_and_answers(
    api: httpx.AsyncClient, worker: None, sn_client: ServiceNowClient
) -> None:
    change = await _start_maintenance_change(api, sn_client, "shim gate: approve via decide")
    path = f"/api/executions/{change['execution_id']}/approve"

    refused = await api.post(path, json={"approver": "   "})
    assert_envelope(refused, 422, "approver must not be empty")

    response = await api.post(path, json={"approver": "alice.ops", "comments": "go ahead"})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["decision"] == "approved"
    assert answer["gate"]["status"] == "approved" and answer["gate"]["approver"] == "alice.ops"

    # The gate is closed now: a second decision is the execution's state, not the caller's typo.
    assert_envelope(await api.post(path, json={"approver": "bob.sre"}), 409, "no approval gate is open")

    status = await _finished(api, change["execution_id"])
    assert status["status"] == "COMPLETED" and status["result"]["outcome"] == "successful"
    ticket = await wait_for_state(sn_client, change["sys_id"], {"3"}, within=10)
    assert ticket["close_code"] == "successful"
    # Closed: no decision can reach it any more.
    assert_envelope(await api.post(path, json={"approver": "bob.sre"}), 409)


async def test_rejection_from_servicenow_arrives_as_a_signal(
    api: httpx.AsyncClient, worker: None, sn_client: ServiceNowClient
) -> None:
    change = await _start_maintenance_change(api, sn_client, "shim gate: rejected in ServiceNow")
    approval = {"number": change["number"], "approval": "rejected", "approver": "carol.cab", "comments": "not now"}
    response = await api.post("/api/servicenow/approval", json=approval)
    assert response.status_code == 202, response.text
    assert response.json()["signal"] == "reject"

    status = await _finished(api, change["execution_id"])
    assert status["result"]["outcome"] == "rejected"
    report = await ticket_report(sn_client, change["sys_id"])
    assert any("carol.cab" in note for note in report.work_notes)
    # The workflow is closed: the same signal again is a conflict, not a silent no-op.
    assert_envelope(await api.post("/api/servicenow/approval", json=approval), 409, "COMPLETED")
