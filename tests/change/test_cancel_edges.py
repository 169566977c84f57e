"""Cancellation edges found by review: a child canceled on its own, and a cancel while a human has the ticket in
Review. Neither is a failure: no incident, and the ticket is never forced through a state that belongs to humans."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.change.windows import fresh, incidents_for, kill_leftover, release, waiting_for_release
from tests.changes import Changes, start
from workflows.change.models import ChangeOutcome
from workflows.runbook.models import runbook_workflow_id

pytestmark = pytest.mark.usefixtures("worker")


async def _end(handle: Any) -> WorkflowExecutionStatus:
    try:
        await asyncio.wait_for(handle.result(), timeout=60)
    except WorkflowFailureError:
        pass
    status: WorkflowExecutionStatus = (await handle.describe()).status
    return status


async def test_canceling_the_runbook_child_directly_cancels_the_ticket_and_opens_no_incident(
    temporal_client: Client, settings: Settings, changes: Changes, sn_client: ServiceNowClient
) -> None:
    """`temporal workflow cancel --workflow-id runbook-CHG…` (README, 'Canceling'): the runbook winds down, and its
    change cancels the ticket with the reason - it was closed unsuccessful, with an incident, before."""
    change = await changes.create(category="Release")
    number = fresh(change["number"])
    handle = await start(temporal_client, settings, number)
    pid = await waiting_for_release(number)
    try:
        await temporal_client.get_workflow_handle(runbook_workflow_id(number)).cancel()
        status = await _end(handle)
        result = await handle.result()
        ticket = await changes.get(change["sys_id"])
        incidents = await incidents_for(sn_client, handle.id, runbook_workflow_id(number))
    finally:
        release(number)
        kill_leftover(pid)

    assert status == WorkflowExecutionStatus.COMPLETED and result.outcome == ChangeOutcome.CANCELED
    assert (ticket["state"], ticket["close_code"]) == ("4", ""), "canceled, not closed unsuccessful"
    assert f"its runbook {runbook_workflow_id(number)} was canceled" in ticket["close_notes"]
    assert incidents == 0, "a cancellation is no failure"


async def test_a_cancel_request_while_a_human_has_the_ticket_in_review_leaves_it_there_and_ends_canceled(
    temporal_client: Client, settings: Settings, changes: Changes, sn_client: ServiceNowClient
) -> None:
    """Review cannot be canceled, and belongs to its reviewers: the refusal ended the execution FAILED with an
    incident before. Now the ticket stays in Review with a work note saying why, and the execution ends CANCELED."""
    change = await changes.create(category="Release")
    number = fresh(change["number"])
    handle = await start(temporal_client, settings, number)
    pid = await waiting_for_release(number)
    try:
        await changes.sn.update("change_request", change["sys_id"], {"state": "0"})  # Implement -> Review
        await handle.cancel(reason="operator stops it")
        status = await _end(handle)
        ticket = await changes.get(change["sys_id"])
        notes = await changes.work_notes(change["sys_id"])
        incidents = await incidents_for(sn_client, handle.id, runbook_workflow_id(number))
    finally:
        release(number)
        kill_leftover(pid)

    assert status == WorkflowExecutionStatus.CANCELED
    assert ticket["state"] == "0", "left in Review for its reviewers"
    left = [n for n in notes if "changeloop left the ticket as it is" in n]
    assert (
        len(left) == 1
        and "Canceled, not implemented: changeloop's execution was canceled (operator stops it)" in left[0]
    )
    assert incidents == 0, "a cancel request is never a failure"
