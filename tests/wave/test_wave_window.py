"""A patch wave stopped through its change: the planned window ends mid-wave (issue 14 item 1: no host starts after the
end, the host running then rolls back with `window_end: roll_back`, the rest are not attempted, the change closes
unsuccessful with a note saying why), or the change is canceled (issue 13 item 4: the ticket canceled with the reason
once every host wound down). No incident, and no host is touched after the ticket closed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError

from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.change.windows import incidents_for, later, now, plan
from tests.changes import Changes, start
from tests.helpers import wait_for
from tests.wave.conftest import BASELINE, TARGET, FleetControl
from workflows.change.models import ChangeOutcome
from workflows.status import QUERY_STATUS
from workflows.wave.models import CiState, HostStatus, WaveStatus, wave_workflow_id

pytestmark = pytest.mark.usefixtures("wave_worker")
PAY = [f"pay-web-0{n}" for n in range(1, 5)]


async def test_the_window_ending_mid_wave_stops_new_hosts_rolls_back_the_running_one_and_closes_unsuccessful(
    temporal_client: Client,
    wave_settings: Settings,
    changes: Changes,
    fleet: FleetControl,
    sn_client: ServiceNowClient,
) -> None:
    # One host at a time: pay-web-01 takes about a second; pay-web-02's operations take 20 s each, so the window
    # ends while it runs, however loaded the machine is (the margin for the first host is the window's 12 s).
    await fleet.configure(op_seconds=0.3)
    await fleet.set_faults("pay-web-02", slow_seconds=20)
    change = await changes.create(template="Patch Linux servers", category="WaveWindow", ci="payments-api")
    window_end = later(12)
    await plan(changes, change, now() - timedelta(minutes=1), window_end)
    handle = await start(temporal_client, wave_settings, change["number"])

    result = await handle.result()
    closed: dict[str, Any] = {name: (await fleet.host(name))["counters"] for name in PAY}

    assert result.outcome == ChangeOutcome.WINDOW_ENDED
    ticket = await changes.get(change["sys_id"])
    assert (ticket["state"], ticket["close_code"]) == ("3", "unsuccessful")
    assert f"its planned window ended at {window_end:%Y-%m-%d %H:%M:%S} UTC" in ticket["close_notes"]
    wave = temporal_client.get_workflow_handle(wave_workflow_id(change["number"]))
    status = await wave.query(QUERY_STATUS, result_type=WaveStatus)
    states = {h.ci: h.state for h in status.hosts}
    assert states["pay-web-01"] == CiState.PATCHED
    assert states["pay-web-02"] == CiState.CANCELED, states  # the host running at the end was stopped
    assert status.counts.patched + status.counts.canceled + status.counts.not_attempted == len(PAY)
    assert status.counts.not_attempted >= 1 and status.counts.failed == status.counts.rolled_back == 0
    for name in PAY:
        host = await fleet.host(name)
        if states.get(name) == CiState.PATCHED:
            assert host["patch_level"] == TARGET
        else:  # stopped (untouched or rolled back) or never started
            assert host["patch_level"] == BASELINE, f"{name} ({states.get(name)}) left changed"
            assert host["counters"]["patch_calls"] == host["counters"]["rollback_calls"] <= 1, name
    notes = await changes.work_notes(change["sys_id"])
    assert any(n.startswith("Patch wave stopped: its planned window ended at") for n in notes)
    assert sum(n.startswith(f"Patch wave {wave.id} summary (stopped)") for n in notes) == 1
    assert await incidents_for(sn_client, handle.id, wave.id) == 0, "a window that ended is no failure"
    assert {name: (await fleet.host(name))["counters"] for name in PAY} == closed, "a host touched after the close"


async def test_canceling_a_change_mid_wave_cancels_the_ticket_after_every_host_wound_down(
    temporal_client: Client,
    wave_settings: Settings,
    changes: Changes,
    fleet: FleetControl,
    sn_client: ServiceNowClient,
) -> None:
    """Issue 13 item 4 through the change: the wave winds down (the host mid-patch rolls back), then the ticket is
    canceled with the reason and the wave's summary; no incident, no host touched after the ticket closed."""
    await fleet.set_faults("pay-web-02", slow_seconds=3)  # caught mid-patch, with margin for the cancel to arrive
    await fleet.set_faults("pay-web-04", slow_seconds=20)  # still taking its snapshot
    change = await changes.create(template="Patch Linux servers", ci="payments-api")
    number = change["number"]
    handle = await start(temporal_client, wave_settings, number)

    async def mid_patch() -> bool:
        try:
            status = await temporal_client.get_workflow_handle(f"patch-{number}-pay-web-02").query(
                QUERY_STATUS, result_type=HostStatus
            )
        except Exception:
            return False
        return status.step == "patch"

    await wait_for(mid_patch, timeout=30, interval=0.05, message="pay-web-02 is patching")
    await handle.cancel(reason="CAB revoked the window")
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout=60)
    assert isinstance(failure.value.cause, CancelledError)
    closed: dict[str, Any] = {name: (await fleet.host(name))["counters"] for name in PAY}

    ticket = await changes.get(change["sys_id"])
    assert ticket["state"] == "4" and ticket["close_code"] == ""
    notes = ticket["close_notes"]
    assert "Canceled, not implemented: changeloop's execution was canceled (CAB revoked the window)" in notes
    assert "patch hosts: canceled" in notes and "pay-web-02: CANCELED - canceled mid-patch; rolled back to" in notes
    host = await fleet.host("pay-web-02")
    assert host["patch_level"] == BASELINE and (
        host["counters"]["patch_calls"],
        host["counters"]["rollback_calls"],
    ) == (
        1,
        1,
    )
    wave = temporal_client.get_workflow_handle(wave_workflow_id(number))
    assert (await wave.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await incidents_for(sn_client, handle.id, wave.id) == 0, "a cancellation opens no incident"
    for name in PAY:  # every host workflow had ended before the ticket was canceled
        described = await temporal_client.get_workflow_handle(f"patch-{number}-{name}").describe()
        assert described.status != WorkflowExecutionStatus.RUNNING, name
    assert {name: (await fleet.host(name))["counters"] for name in PAY} == closed, "a host touched after the close"
