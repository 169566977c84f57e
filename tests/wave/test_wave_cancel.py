"""Canceling a wave is its own outcome, not a failure: it stops starting hosts, winds down the ones running (a host
mid-patch goes back to its snapshot, one not yet patched stops untouched), waits for all of them, writes its summary
to the ticket, tells its parent, opens no incident, and ends CANCELED with no host touched afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.catalog import central_activities
from config.registry import Registry
from config.runbooks import runbook_digest
from config.settings import Settings
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import Changes
from tests.helpers import wait_for
from tests.wave.conftest import BASELINE, FLEET, TARGET, FleetControl
from tests.wave.wave_parent import SIGNAL_CANCEL_WAVE, ParentView, WaveParentWorkflow
from workflows.catalog import WORKFLOW_INTERCEPTORS, WORKFLOWS
from workflows.status import QUERY_STATUS, StepOutcome
from workflows.wave.models import CiState, HostStatus, WaveRun, WaveStatus, patch_host_workflow_id, wave_workflow_id

PAY = [f"pay-web-0{n}" for n in range(1, 5)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cancel_settings(
    temporal_client: Client, settings: Settings, wave_registry: Registry, sandbox: Any
) -> AsyncIterator[Settings]:
    """A worker with the product's workflows and a test parent that cancels its wave child on a signal."""
    isolated = settings.model_copy(update={"task_queue": "wave-cancel-test"})
    async with ServiceNowClient.from_settings(isolated) as sn:
        async with Worker(
            temporal_client,
            task_queue=isolated.task_queue,
            workflows=[*WORKFLOWS, WaveParentWorkflow],
            activities=central_activities(temporal_client, isolated, wave_registry, sn),
            interceptors=list(WORKFLOW_INTERCEPTORS),
        ):
            yield isolated


def _wave_run(registry: Registry, runbook: str, change: dict[str, Any]) -> WaveRun:
    """The wave's input as a change sends it: the registry entry by name and digest, never the entry itself."""
    return WaveRun(
        runbook=runbook,
        digest=runbook_digest(registry.runbooks[runbook]),
        variables={"change": change["number"]},
        change_number=change["number"],
        change_sys_id=change["sys_id"],
    )


async def _host_step(client: Client, number: str, ci: str) -> str:
    try:
        status = await client.get_workflow_handle(patch_host_workflow_id(number, ci)).query(
            QUERY_STATUS, result_type=HostStatus
        )
    except Exception:  # not started yet
        return ""
    return status.step


async def _host_statuses(client: Client, number: str, names: list[str]) -> dict[str, WorkflowExecutionStatus | None]:
    found: dict[str, WorkflowExecutionStatus | None] = {}
    for name in names:
        try:
            found[name] = (await client.get_workflow_handle(patch_host_workflow_id(number, name)).describe()).status
        except Exception:
            found[name] = None  # never started
    return found


async def _incidents_for(sn: ServiceNowClient, *workflow_ids: str) -> list[dict[str, Any]]:
    return await sn.list("incident", Query().in_("correlation_id", list(workflow_ids)), fields=["number"])


async def test_a_canceled_wave_rolls_back_the_host_mid_patch_stops_the_others_and_tells_its_parent(
    temporal_client: Client,
    cancel_settings: Settings,
    wave_registry: Registry,
    changes: Changes,
    fleet: FleetControl,
    sn_client: ServiceNowClient,
) -> None:
    # Each of pay-web-02's operations takes 3 s: the cancel (two workflow tasks away) reaches it mid-patch on a loaded
    # machine too (1.5 s left about a second of margin). pay-web-04's snapshot outlasts the whole test.
    await fleet.set_faults("pay-web-02", slow_seconds=3)  # caught mid-patch
    await fleet.set_faults("pay-web-04", slow_seconds=20)  # still taking its snapshot when the cancel comes
    change = await changes.create(template="Patch Linux servers", ci="payments-api")
    number = change["number"]
    parent = await temporal_client.start_workflow(
        WaveParentWorkflow.run,
        _wave_run(wave_registry, "patch_linux_servers", change),
        id=f"wave-parent-{uuid.uuid4().hex[:8]}",
        task_queue=cancel_settings.task_queue,
        result_type=ParentView,
    )

    async def mid_patch() -> bool:
        return await _host_step(temporal_client, number, "pay-web-02") == "patch"

    await wait_for(mid_patch, timeout=30, interval=0.05, message="pay-web-02 is patching")
    await parent.signal(SIGNAL_CANCEL_WAVE)
    view = await asyncio.wait_for(parent.result(), timeout=60)

    wave = temporal_client.get_workflow_handle(wave_workflow_id(number))
    assert (await wave.describe()).status == WorkflowExecutionStatus.CANCELED
    assert view.ended == "canceled"
    (step,) = [s for s in view.steps if s.name == "patch hosts"]
    assert step.outcome == StepOutcome.CANCELED
    assert f"Patch wave {wave.id} canceled: 2 patched" in step.detail and "2 canceled" in step.detail
    assert "pay-web-02: CANCELED - canceled mid-patch; rolled back to snap-" in step.detail
    assert "pay-web-04: CANCELED - canceled before its patch: host left as it was" in step.detail

    status = await wave.query(QUERY_STATUS, result_type=WaveStatus)
    assert status.phase == "canceled" and status.counts.running == 0
    assert {h.ci: h.state for h in status.hosts} == {
        "pay-web-01": CiState.PATCHED,
        "pay-web-02": CiState.CANCELED,
        "pay-web-03": CiState.PATCHED,
        "pay-web-04": CiState.CANCELED,
    }
    hosts = {name: await fleet.host(name) for name in PAY}
    assert hosts["pay-web-02"]["patch_level"] == BASELINE, "the host caught mid-patch is back on its snapshot"
    assert (hosts["pay-web-02"]["counters"]["patch_calls"], hosts["pay-web-02"]["counters"]["rollback_calls"]) == (1, 1)
    assert hosts["pay-web-04"]["patch_level"] == BASELINE and hosts["pay-web-04"]["counters"]["patch_calls"] == 0
    assert [hosts[n]["patch_level"] for n in ("pay-web-01", "pay-web-03")] == [TARGET, TARGET]

    children = await _host_statuses(temporal_client, number, PAY)
    assert WorkflowExecutionStatus.RUNNING not in children.values(), "no host workflow outlives the wave"
    assert children["pay-web-02"] == children["pay-web-04"] == WorkflowExecutionStatus.CANCELED
    notes = await changes.work_notes(change["sys_id"])
    summaries = [n for n in notes if n.startswith(f"Patch wave {wave.id} summary (canceled): 2 patched")]
    assert len(summaries) == 1
    assert await _incidents_for(sn_client, wave.id, parent.id) == [], "a cancellation opens no incident"


async def test_a_wave_canceled_after_continue_as_new_winds_down_inherited_hosts_and_never_starts_the_rest(
    temporal_client: Client,
    cancel_settings: Settings,
    wave_registry: Registry,
    changes: Changes,
    fleet: FleetControl,
    sn_client: ServiceNowClient,
) -> None:
    await fleet.configure(op_seconds=0.4)
    change = await changes.create(template="Patch Linux servers", category="WavePaged", ci="fleet")
    number = change["number"]
    # Started on its own (no parent): a top-level wave canceled by `temporal workflow cancel`.
    wave = await temporal_client.start_workflow(
        "PatchWaveWorkflow",
        _wave_run(wave_registry, "patch_wave_paged", change),
        id=wave_workflow_id(number),
        task_queue=cancel_settings.task_queue,
    )

    async def second_run_rolling() -> bool:
        status = await wave.query(QUERY_STATUS, result_type=WaveStatus)
        return status.run >= 2 and status.counts.running > 0 and status.counts.patched >= 3

    await wait_for(second_run_rolling, timeout=60, interval=0.1, message="the wave's second run is patching")
    await wave.cancel()
    done = await asyncio.wait_for(wait_for(lambda: _closed(wave), timeout=60, message="the wave ended"), timeout=90)
    at_end = {name: (await fleet.host(name))["counters"] for name in FLEET}

    assert done == WorkflowExecutionStatus.CANCELED, await _how_it_ended(wave)
    status = await wave.query(QUERY_STATUS, result_type=WaveStatus)
    counts = status.counts
    assert counts.running == counts.pending == 0
    assert counts.patched + counts.canceled + counts.not_attempted == len(FLEET) and counts.not_attempted > 0
    assert counts.failed == counts.rolled_back == 0
    children = await _host_statuses(temporal_client, number, FLEET)
    assert WorkflowExecutionStatus.RUNNING not in children.values(), "no host workflow outlives the wave"
    states = {h.ci: h.state for h in status.hosts}
    for name in FLEET:
        host = await fleet.host(name)
        calls = at_end[name]
        if states.get(name) == CiState.PATCHED:
            assert host["patch_level"] == TARGET and calls["patch_calls"] == 1, name
        else:  # canceled (untouched or rolled back) or never started (including CIs on pages never read)
            assert host["patch_level"] == BASELINE, f"{name} ({states.get(name)}) left changed"
            assert calls["patch_calls"] <= 1 and calls["patch_calls"] == calls["rollback_calls"], name
        assert host["counters"] == calls, f"{name} was touched after the wave ended"
    notes = await changes.work_notes(change["sys_id"])
    assert sum(n.startswith(f"Patch wave {wave.id} summary (canceled)") for n in notes) == 1
    assert await _incidents_for(sn_client, wave.id) == [], "a cancellation opens no incident"


async def _how_it_ended(handle: Any) -> str:
    """The closing event of the wave's last run (its failure, when it failed), for the assertion's message."""
    events = [event async for event in handle.fetch_history_events()]
    return str(events[-1]) if events else "no history"


async def _closed(handle: Any) -> WorkflowExecutionStatus | None:
    status = (await handle.describe()).status
    return None if status == WorkflowExecutionStatus.RUNNING else status
