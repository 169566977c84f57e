"""Canceling a change is its own outcome (issue 13 item 4, the change half), and so is ServiceNow canceling it
(item 5): the step in flight is canceled (its command killed) or, declared `on_cancel: finish`, finishes; nothing runs
after it; the ticket is canceled with the reason (or, canceled in ServiceNow, left as ServiceNow has it); no incident.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError

from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.change.windows import (
    alive,
    fresh,
    incidents_for,
    kill_leftover,
    release,
    runbook_status,
    status_when,
    waiting_for_release,
)
from tests.changes import Changes, start
from tests.helpers import wait_for
from workflows.change.models import ChangeOutcome, ChangeStatus, GateStatus
from workflows.runbook.models import runbook_workflow_id
from workflows.status import StepOutcome

pytestmark = pytest.mark.usefixtures("worker")


async def poll_interval_passed(settings: Settings) -> None:
    """The watch reads the ticket again once its poll interval has passed since it last did (its contract): the
    test lets that interval pass while the step runs, as a long step would. Time is the scenario here."""
    began = time.monotonic()
    interval = settings.ticket_poll_interval.total_seconds()
    await wait_for(lambda: time.monotonic() - began > interval + 0.2, timeout=interval + 5, interval=0.1)


async def _canceled(handle: object) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout=60)  # type: ignore[attr-defined]
    assert isinstance(failure.value.cause, CancelledError)


async def test_canceling_a_change_mid_runbook_kills_the_step_cancels_the_ticket_and_opens_no_incident(
    temporal_client: Client, settings: Settings, changes: Changes, sn_client: ServiceNowClient
) -> None:
    change = await changes.create(category="Release")
    number = fresh(change["number"])
    handle = await start(temporal_client, settings, number)
    pid = await waiting_for_release(number)
    try:
        await handle.cancel(reason="wrong CI, redo tomorrow")
        await _canceled(handle)

        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        runbook = temporal_client.get_workflow_handle(runbook_workflow_id(number))
        assert (await runbook.describe()).status == WorkflowExecutionStatus.CANCELED
        await wait_for(lambda: not alive(pid), timeout=10, message="the step's command was killed")
        ticket = await changes.get(change["sys_id"])
        assert ticket["state"] == "4", "canceled, not closed"
        assert (
            "Canceled, not implemented: changeloop's execution was canceled (wrong CI, redo tomorrow)"
            in (ticket["close_notes"])
        )
        assert "- wait for release: canceled" in ticket["close_notes"]
        status: ChangeStatus = await handle.query("status", result_type=ChangeStatus)
        assert [(s.name, s.outcome) for s in status.steps] == [
            ("first", StepOutcome.SUCCEEDED),
            ("wait for release", StepOutcome.CANCELED),
        ]
        assert status.result is not None and status.result.outcome == ChangeOutcome.CANCELED
        assert await incidents_for(sn_client, handle.id, runbook.id) == 0, "a cancellation is no failure"
    finally:
        release(number)
        kill_leftover(pid)


async def test_a_step_that_declares_on_cancel_finish_runs_to_its_end_and_nothing_after_it(
    temporal_client: Client, settings: Settings, changes: Changes, sn_client: ServiceNowClient
) -> None:
    change = await changes.create(category="ReleaseFinish")
    number = fresh(change["number"])
    handle = await start(temporal_client, settings, number)
    pid = await waiting_for_release(number)
    try:
        await handle.cancel()
        await status_when(handle, lambda s: s.phase in ("running", "awaiting_approval"), "still running")
        assert alive(pid), "a step declared on_cancel: finish was killed"
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        release(number)
        await _canceled(handle)

        status: ChangeStatus = await handle.query("status", result_type=ChangeStatus)
        assert [(s.name, s.outcome) for s in status.steps] == [
            ("first", StepOutcome.SUCCEEDED),
            ("wait for release", StepOutcome.SUCCEEDED),
        ], "the step finished, and 'last' never started"
        ticket = await changes.get(change["sys_id"])
        assert ticket["state"] == "4" and "- wait for release: succeeded" in ticket["close_notes"]
        assert await incidents_for(sn_client, handle.id) == 0
    finally:
        release(number)
        kill_leftover(pid)


async def test_a_change_canceled_in_servicenow_mid_runbook_runs_no_further_step_and_opens_no_incident(
    temporal_client: Client, settings: Settings, changes: Changes, sn_client: ServiceNowClient
) -> None:
    change = await changes.create(category="Release")
    number = fresh(change["number"])
    handle = await start(temporal_client, settings, number)
    pid = await waiting_for_release(number)
    try:
        await changes.sn.update("change_request", change["sys_id"], {"state": "4"})  # the change manager cancels it
        await poll_interval_passed(settings)  # no Business Rule in this sandbox: the watch's poll must see it
        release(number)
        result = await asyncio.wait_for(handle.result(), timeout=60)

        assert result.outcome == ChangeOutcome.CANCELED_IN_SERVICENOW
        assert [s.name for s in result.steps] == ["first", "wait for release"], "'last' ran after the cancel"
        status = await runbook_status(temporal_client, number)
        assert status is not None and status.result is not None and status.result.stopped == "canceled_in_servicenow"
        ticket = await changes.get(change["sys_id"])
        assert ticket["state"] == "4" and ticket["close_code"] == "", "ServiceNow's cancel stands, nothing closed"
        notes = await changes.work_notes(change["sys_id"])
        assert any("the change was canceled in ServiceNow" in n and "not run: 'last'" in n for n in notes), notes
        assert await incidents_for(sn_client, handle.id, runbook_workflow_id(number)) == 0
    finally:
        release(number)
        kill_leftover(pid)


async def test_a_change_on_hold_pauses_between_steps_until_released(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(category="Release")
    number = fresh(change["number"])
    handle = await start(temporal_client, settings, number)
    pid = await waiting_for_release(number)
    try:
        await changes.sn.update("change_request", change["sys_id"], {"on_hold": "true", "on_hold_reason": "vendor"})
        await poll_interval_passed(settings)
        release(number)

        async def held() -> bool:
            status = await runbook_status(temporal_client, number)
            return bool(status and status.waiting and status.waiting.phase == "on_hold")

        await wait_for(held, timeout=20, message="the runbook paused on hold")
        status = await runbook_status(temporal_client, number)
        assert status is not None and [s.name for s in status.steps] == ["first", "wait for release"]
        assert status.waiting is not None and status.waiting.reason == "the change is on hold (vendor)"

        await changes.sn.update("change_request", change["sys_id"], {"on_hold": "false"})
        result = await asyncio.wait_for(handle.result(), timeout=60)
        assert result.outcome == ChangeOutcome.SUCCESSFUL
        assert [s.name for s in result.steps] == ["first", "wait for release", "last"]
        notes = "\n".join(await changes.work_notes(change["sys_id"]))
        assert "changeloop paused before step 'last': the change is on hold (vendor)" in notes
        assert "changeloop goes on: the hold was released. Next: step 'last'." in notes
    finally:
        release(number)
        kill_leftover(pid)


async def test_a_change_canceled_in_servicenow_while_its_gate_waits_stops_waiting(
    temporal_client: Client, settings: Settings, changes: Changes, sn_client: ServiceNowClient
) -> None:
    change = await changes.create(template="Run maintenance steps")  # destructive: its gate waits up to 24 h
    handle = await start(temporal_client, settings, change["number"])
    await status_when(handle, lambda s: s.gate.status == GateStatus.WAITING, "the gate waits")

    await changes.sn.update("change_request", change["sys_id"], {"state": "4"})
    result = await asyncio.wait_for(handle.result(), timeout=30)

    assert result.outcome == ChangeOutcome.CANCELED_IN_SERVICENOW and result.steps == []
    assert (await changes.get(change["sys_id"]))["state"] == "4"
    assert await incidents_for(sn_client, handle.id, runbook_workflow_id(change["number"])) == 0
