"""Issue 11, attack 1: every destructive run passes its gate, whatever started it (a change, a flow run, a wave, a
workflow started from the `temporal` CLI), and a destructive runbook that names nobody who may approve it is refused
by the registry."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from config.registry import Registry, RegistryError, parse_registry
from config.runbooks import runbook_digest
from tests.helpers import wait_for
from tests.security.conftest import Stack
from workflows.gate.models import ApprovalInput, GateStatus
from workflows.runbook.models import RunbookRun, RunbookStatus


async def _gate(stack: Stack, execution_id: str, status: str = "waiting") -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body = await stack.status(execution_id)
        return body if (body.get("gate") or {}).get("status") == status else None

    return await wait_for(reached, timeout=30, interval=0.1, message=f"{execution_id} gate {status}")


async def _closed(stack: Stack, execution_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await stack.status(execution_id)
        return body if body["status"] not in ("RUNNING", "NOT_STARTED") else None

    return await wait_for(done, timeout=30, interval=0.1, message=f"{execution_id} closed")


async def test_a_flow_run_of_a_destructive_runbook_waits_at_its_gate(stack: Stack) -> None:
    async with stack.http("mallory") as mallory:
        # mallory may start this flow (flow:run:maintenance_steps) - starting is not approving.
        started = await mallory.post("/api/flows/maintenance_steps/run", json={"inputs": {}})
        assert started.status_code == 202, started.text
        flow_id = started.json()["executionId"]
        waiting = await _gate(stack, flow_id)
        assert waiting["progress"]["done"] == 0 and waiting["status"] == "RUNNING"
        assert waiting["gate"]["approvers"] == ["alice.ops", "carol.cab"]
        refused = await mallory.post(f"/api/executions/{flow_id}/approve", json={})
        assert refused.status_code == 403, refused.text
    assert (await stack.status(flow_id))["progress"]["done"] == 0, "nothing ran"

    async with stack.http("alice.ops") as alice:
        approved = await alice.post(f"/api/executions/{flow_id}/approve", json={"comments": "window ok"})
    assert approved.status_code == 202, approved.text
    final = await _closed(stack, flow_id)
    assert final["status"] == "COMPLETED" and final["result"]["succeeded"] is True
    assert final["progress"]["done"] == 1
    assert final["gate"]["approver"] == "alice.ops" and final["gate"]["proof"]["kind"] == "shim"


async def test_a_rejected_flow_run_runs_nothing_and_is_not_a_failure(stack: Stack) -> None:
    async with stack.http("operator") as operator:
        started = await operator.post("/api/flows/maintenance_steps/run", json={"inputs": {}})
    flow_id = started.json()["executionId"]
    await _gate(stack, flow_id)
    async with stack.http("carol.cab") as carol:
        rejected = await carol.post(f"/api/executions/{flow_id}/reject", json={"comments": "no"})
    assert rejected.status_code == 202, rejected.text
    final = await _closed(stack, flow_id)
    # An answer, not a failure: the flow completes (no incident) with nothing run.
    assert final["status"] == "COMPLETED"
    assert final["result"]["succeeded"] is False and final["result"]["error"] == "rejected by carol.cab: no"
    assert final["result"]["steps"] == []
    assert await stack.incidents_for(flow_id) == 0


async def _patch_calls(fleet: httpx.AsyncClient) -> int:
    """Patch calls the fleet's hosts received (calls, not level changes: a repeated patch counts)."""
    names = [h["name"] for h in (await fleet.get("/hosts")).json()]
    assert names, "the fleet has hosts"
    calls = 0
    for name in names:
        calls += (await fleet.get(f"/hosts/{name}")).json()["counters"]["patch_calls"]
    return calls


async def test_a_patch_wave_waits_at_its_gate_before_the_first_host(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=f"{stack.sandbox_url}/fleet", timeout=10) as fleet:
        await fleet.post("/reset")
        change = await stack.changes().create(template="Patch Linux servers", category="WaveGated", ci="fleet")
        execution_id = f"change-{change['number']}"
        waiting = await _gate(stack, execution_id)  # the sandbox's Business Rule started it
        assert waiting["gate"]["approver_group"] == "Change Advisory Board"
        assert await _patch_calls(fleet) == 0, "no host touched before approval"

        async with stack.http("carol.cab") as carol:  # a member of the group, not named in approvers
            approved = await carol.post(f"/api/executions/{execution_id}/approve", json={})
        assert approved.status_code == 202, approved.text
        final = await _closed(stack, execution_id)
        assert final["result"]["outcome"] == "successful", final
        assert await _patch_calls(fleet) > 0
        await fleet.post("/reset")


async def test_a_runbook_started_from_the_temporal_cli_waits_at_its_gate(stack: Stack, registry: Registry) -> None:
    """`temporal workflow start --type RunbookWorkflow` with a destructive runbook: the gate holds there too."""
    client: Client = stack.client
    handle = await client.start_workflow(
        "RunbookWorkflow",
        RunbookRun(runbook="maintenance_steps", digest=runbook_digest(registry.runbooks["maintenance_steps"])),
        id=f"by-hand-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue,
    )

    async def waiting() -> RunbookStatus | None:
        status = await handle.query("status", result_type=RunbookStatus)
        return status if status.gate is not None and status.gate.status == GateStatus.WAITING else None

    status = await wait_for(waiting, timeout=30, message="the hand-started runbook's gate")
    # The frontend's own signal names alice, but proves nothing here: refused, and still nothing runs.
    await handle.signal("approve", ApprovalInput(approver="alice.ops"))

    async def judged() -> RunbookStatus | None:
        status = await handle.query("status", result_type=RunbookStatus)
        return status if status.gate and "refused a decision by alice.ops" in status.gate.waiting_for else None

    status = await wait_for(judged, timeout=30, message="the signal judged")
    assert status.gate is not None and status.gate.status == GateStatus.WAITING and status.steps == []
    await handle.terminate("test over")


def test_the_registry_refuses_a_destructive_runbook_that_nobody_may_approve() -> None:
    text = """
runbooks:
  fine:
    steps: [{name: s, command: ["true"]}]
  wipe_disks:
    destructive: true
    steps: [{name: s, command: ["true"]}]
"""
    with pytest.raises(RegistryError) as refused:
        parse_registry(text, "prod.yaml")
    assert "prod.yaml:6: runbooks.wipe_disks.approvers: a destructive runbook needs `approvers`" in str(refused.value)
    parse_registry(text.replace("destructive: true", "destructive: true\n    approver_group: CAB"), "prod.yaml")
