"""The runbook's log on the change (in-process worker, real dev server and sandbox): every step's output in one
`runbook-<number>.log`, each step's output capped by the worker (CHANGELOOP_STEP_OUTPUT_MAX_BYTES), the status'
step records kept short; and a run cancelled mid-step still closes the step's task and attaches what ran."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowFailureError

from config.registry import Registry
from config.runbooks import runbook_digest
from config.settings import Settings
from sandbox.seed import seed_sys_id
from servicenow import attachments
from servicenow.change_task import ChangeTaskState
from tests.changes import Changes, start
from tests.evidence.conftest import STEP_OUTPUT_CAP, Evidence
from tests.helpers import wait_for
from workflows.runbook.models import RunbookRun, RunbookStatus, runbook_workflow_id

CAB = seed_sys_id("sys_user_group", "Change Advisory Board")


async def _log(evidence: Evidence, change: dict[str, Any]) -> str:
    files = await evidence.files("change_request", change["sys_id"])
    assert [f.file_name for f in files] == [f"runbook-{change['number']}.log"]
    return (await attachments.download(evidence.sn, files[0].sys_id)).decode()


async def test_a_closed_change_carries_every_step_output_and_the_status_stays_short(
    temporal_client: Client, evidence_settings: Settings, evidence: Evidence, changes: Changes
) -> None:
    change = await changes.create(template="Restart application service")  # restart_app_service: tasks none
    handle = await start(temporal_client, evidence_settings, change["number"])
    await handle.result()

    log = await _log(evidence, change)

    assert log.startswith(f"changeloop: runbook 'restart_app_service' for {change['number']}, succeeded")
    for line in ("stopping app on payments-api", "starting app on payments-api", "healthy"):
        assert line in log
    headers = [line for line in log.splitlines() if line.startswith("=== step")]
    assert len(headers) == 3 and headers[0].startswith("=== step 1/3 'stop service' - succeeded in ")
    assert await evidence.tasks(change["sys_id"]) == [], "no change task unless the runbook asks for them"
    runbook = temporal_client.get_workflow_handle(runbook_workflow_id(change["number"]))
    status = await runbook.query("status", result_type=RunbookStatus)
    assert status.log == f"runbook-{change['number']}.log ({len(log.encode())} bytes)"
    assert all(len(step.detail) <= 300 for step in status.steps)


async def test_a_step_output_over_the_cap_keeps_its_head_and_its_end(
    temporal_client: Client, evidence_settings: Settings, evidence: Evidence, changes: Changes
) -> None:
    change = await changes.create(category="Chatty")
    handle = await start(temporal_client, evidence_settings, change["number"])
    await handle.result()

    log = await _log(evidence, change)

    assert "HEAD-OF-OUTPUT" in log and "END-OF-OUTPUT" in log
    assert f"bytes cut by changeloop: the cap is {STEP_OUTPUT_CAP} bytes" in log
    assert len(log.encode()) < STEP_OUTPUT_CAP + 1024, "the step returned at most its cap; the log adds its header"
    runbook = temporal_client.get_workflow_handle(runbook_workflow_id(change["number"]))
    completed = [e.activity_task_completed_event_attributes for e in (await runbook.fetch_history()).events]
    sizes = [len(p.data) for c in completed if c.HasField("result") for p in c.result.payloads]
    assert sizes and max(sizes) < STEP_OUTPUT_CAP + 512, "the history holds the capped output, not the 20 kB"


async def test_a_run_cancelled_mid_step_closes_the_step_task_and_attaches_what_ran(
    temporal_client: Client, evidence_settings: Settings, evidence: Evidence, changes: Changes, registry: Registry
) -> None:
    change = await changes.create()
    number = change["number"]
    run = RunbookRun(
        runbook="slow_tasks",
        digest=runbook_digest(registry.runbooks["slow_tasks"]),
        change_number=number,
        change_sys_id=change["sys_id"],
        variables={"host": "payments-api", "change": number},
    )
    handle = await temporal_client.start_workflow(
        "RunbookWorkflow", run, id=runbook_workflow_id(number), task_queue=evidence_settings.task_queue
    )

    async def long_wait_running() -> bool:
        # Its task is open (so the first step's run_step is over) and a run_step has started: the second step's.
        if not any(t["correlation_id"].endswith(":long wait") for t in await evidence.tasks(change["sys_id"])):
            return False
        pending = (await handle.describe()).raw_description.pending_activities
        return any(
            a.activity_type.name == "run_step" and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for a in pending
        )

    await wait_for(long_wait_running, timeout=30, message="the second step runs (its task opened before it)")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    tasks = await evidence.tasks(change["sys_id"])
    by_step = {t["correlation_id"].split(":", 1)[1]: t for t in tasks}
    assert sorted(by_step) == ["long wait", "warm up"], "no task for the step never started"
    assert (by_step["warm up"]["state"], by_step["warm up"]["close_code"]) == (
        ChangeTaskState.CLOSED.value,
        "successful",
    )
    assert (by_step["long wait"]["state"], by_step["long wait"]["close_code"]) == (
        ChangeTaskState.CLOSED.value,
        "unsuccessful",
    )
    assert "cancel" in by_step["long wait"]["close_notes"].lower()
    assert all(t["assignment_group"] == CAB for t in tasks), "task_group routes the runbook's tasks"
    log = await _log(evidence, change)
    assert "warmed up" in log and "=== step 3/3 'after' - not run ===" in log
