"""The wave watches every host it started, whichever of its runs started it: a wave continues as new per CMDB page,
and a host child that an earlier run started and that then ends without reporting (an operator terminated it, a
bug failed it) must still be noticed, or the wave waits for it forever in `draining`."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from config.settings import Settings
from tests.changes import Changes, start
from tests.helpers import wait_for
from tests.wave.conftest import FLEET, TARGET, FleetControl
from workflows.status import QUERY_STATUS
from workflows.wave.models import CiState, WaveStatus, patch_host_workflow_id, wave_workflow_id


async def _inherited_child(client: Client, number: str) -> tuple[str, WorkflowHandle[Any, Any]] | None:
    """A host child still patching that an earlier run of the wave started (not the current run)."""
    try:
        current = await client.get_workflow_handle(wave_workflow_id(number)).describe()
    except RPCError:
        return None  # the change has not started its wave yet
    for name in FLEET:
        child = client.get_workflow_handle(patch_host_workflow_id(number, name))
        try:
            described = await child.describe()
        except RPCError:
            continue  # not started yet
        if described.status == WorkflowExecutionStatus.RUNNING and described.parent_run_id not in (
            None,
            current.run_id,
        ):
            return name, child
    return None


async def test_a_host_started_by_an_earlier_run_that_ends_without_reporting_does_not_hang_the_wave(
    temporal_client: Client, wave_settings: Settings, changes: Changes, fleet: FleetControl, wave_worker: Any
) -> None:
    await fleet.configure(op_seconds=1.0)  # ~3 s per host: children outlive the runs that started them
    change = await changes.create(template="Patch Linux servers", category="WaveWide", ci="fleet")
    handle = await start(temporal_client, wave_settings, change["number"])

    name, victim = await wait_for(lambda: _inherited_child(temporal_client, change["number"]), timeout=30, interval=0.1)
    await victim.terminate("operator: host decommissioned mid-patch")
    result = await asyncio.wait_for(handle.result(), timeout=60)

    status = await temporal_client.get_workflow_handle(wave_workflow_id(change["number"])).query(
        QUERY_STATUS, result_type=WaveStatus
    )
    assert status.run > 1, "the victim was started by an earlier run"
    hosts = {h.ci: h for h in status.hosts}
    assert hosts[name].state == CiState.FAILED and "ended without a report" in hosts[name].detail
    assert "Terminated" in hosts[name].detail or "terminated" in hosts[name].detail
    assert result.close_code == "successful_issues"
    assert status.counts.patched == len(FLEET) - 1 and status.counts.running == 0
    levels = {n: (await fleet.host(n))["patch_level"] for n in FLEET if n != name}
    assert set(levels.values()) == {TARGET}
