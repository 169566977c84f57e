"""A runbook's timeout bounds its steps, never its ticket writes (issue 13 item 6): a ServiceNow outage longer than
the runbook's timeout delays the notes and the close of a healthy change and fails nothing; a step that needs more
than the timeout still fails, naming it."""

from __future__ import annotations

import asyncio
import time

import pytest
from temporalio.client import Client, WorkflowFailureError

from config.settings import Settings
from servicenow.client import ServiceNowClient
from tests.change.windows import incidents_for, runbook_status
from tests.changes import Changes, start
from tests.conftest import SandboxControl
from tests.helpers import wait_for
from workflows.change.models import ChangeOutcome, ChangeStatus
from workflows.runbook.models import runbook_workflow_id

pytestmark = pytest.mark.usefixtures("worker")
OUTAGE_SECONDS = 16  # the runbook's timeout is 8 s (tests/runbooks.yaml outage_runbook); issue 13 reproduced it with 12


async def test_an_outage_longer_than_the_runbook_timeout_delays_a_healthy_change_and_fails_nothing(
    temporal_client: Client,
    settings: Settings,
    changes: Changes,
    reset_faults: SandboxControl,
    sn_client: ServiceNowClient,
) -> None:
    change = await changes.create(category="Outage")
    number = change["number"]
    handle = await start(temporal_client, settings, number)

    async def step_one_running() -> bool:
        status = await runbook_status(temporal_client, number)
        return bool(status and status.step == "one")

    await wait_for(step_one_running, timeout=30, interval=0.02, message="step 'one' running")
    await reset_faults.set_faults(error_rate=1.0, error_statuses=[503])  # every ServiceNow call answers 503
    began = time.monotonic()
    try:
        # The outage's length is the scenario, not a synchronisation: ServiceNow is down this long, whatever runs.
        await asyncio.sleep(OUTAGE_SECONDS)
        # Read while ServiceNow is still down (a query needs no ServiceNow): once it is back, a retry due at that
        # moment may write the notes and close the change before a status read after the outage.
        status: ChangeStatus = await handle.query("status", result_type=ChangeStatus)
    finally:
        await reset_faults.clear_faults()
    outage_over = time.monotonic()
    assert [s.name for s in status.steps] == ["one", "two"], "the steps waited for the notes"
    assert status.result is None, "the change closed during the outage"

    result = await asyncio.wait_for(handle.result(), timeout=180)
    assert result.outcome == ChangeOutcome.SUCCESSFUL, result
    assert outage_over - began >= OUTAGE_SECONDS > 8
    ticket = await changes.get(change["sys_id"])
    assert (ticket["state"], ticket["close_code"]) == ("3", "successful")
    notes = "\n".join(await changes.work_notes(change["sys_id"]))
    assert "'one' succeeded" in notes and "'two' succeeded" in notes
    assert await incidents_for(sn_client, handle.id, runbook_workflow_id(number)) == 0


async def test_a_step_that_needs_more_than_the_runbook_timeout_fails_naming_it(
    temporal_client: Client, settings: Settings, changes: Changes
) -> None:
    change = await changes.create(category="Slow")
    handle = await start(temporal_client, settings, change["number"])
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=60)
    status: ChangeStatus = await handle.query("status", result_type=ChangeStatus)
    assert status.result is not None and status.result.outcome == ChangeOutcome.UNSUCCESSFUL
    assert status.result.failed_step == "slow"
    assert "the runbook's timeout (0:00:02) of step time ran out" in status.result.error
    ticket = await changes.get(change["sys_id"])
    assert ticket["close_code"] == "unsuccessful" and "failed at step 'slow'" in ticket["close_notes"]
