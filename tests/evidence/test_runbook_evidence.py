"""Issue 15's acceptance on the real stack: a `tasks: per_step` runbook run by a real `changeloop worker` process that
is killed (SIGKILL) in the middle of a step and replaced by a new one.

The runbook's first step prints a configured secret (a named secret of the worker, as harden's tests give one), the
second waits for a release file (the kill falls there), the third fails quoting the secret, the fourth is never
reached. Afterwards: exactly one closed change task per step that ran, with the states the steps ended in; one
attachment on the change holding every step's output and no form of the secret; the incident carries the failing
step's output; and a repeated close (the runbook reset to just before its attachment) uploads nothing twice.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError

from config.settings import Settings
from ops.scrub import REDACTED
from servicenow import attachments
from servicenow.change_task import ChangeTaskState
from servicenow.client import ServiceNowClient
from servicenow.query import Query
from tests.changes import Changes, start
from tests.conftest import INTEGRATION_USER, SandboxControl
from tests.helpers import wait_for
from tests.security.conftest import SECRET_NAME, WorkerProcess, strong_secret
from workflows.runbook.models import RunbookStatus, runbook_workflow_id

# The markers make each step's output recognisable in the attachment (and prove the output is the step's own).
MARKERS = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("first", "second", "third")}

REGISTRY = """
runbooks:
  evidence_per_step:
    description: a change task per step; prints a configured secret; waits for a release file; fails quoting it
    tasks: per_step
    params: {marker_dir: __MARKER_DIR__}
    steps:
      - name: print secret
        env: {STEP_API_TOKEN: {secret: STEP_API_TOKEN}}
        command: ["{python}", "-c", "import os, base64, urllib.parse; t = os.environ['STEP_API_TOKEN']; print('__FIRST__ token', t); print('b64', base64.b64encode(t.encode()).decode()); print('quoted', urllib.parse.quote(t, safe=''))"]
      - name: wait for release
        heartbeat_timeout: 2s
        timeout: 2m
        command: ["{python}", "-c", "import sys, time, pathlib; d = pathlib.Path(sys.argv[1]); d.joinpath('waiting').open('a').write('ran\\\\n'); print('__SECOND__ waited'); [time.sleep(0.1) for _ in iter(lambda: d.joinpath('release').exists(), True)]", "{marker_dir}"]
      - name: fail quoting it
        retries: 0
        env: {STEP_API_TOKEN: {secret: STEP_API_TOKEN}}
        command: ["{python}", "-c", "import os, sys; t = os.environ['STEP_API_TOKEN']; print('__THIRD__ using', t); sys.exit('refused: Authorization: Bearer ' + t)"]
      - name: never reached
        command: ["{python}", "-c", "print('unreachable')"]

match:
  - category: EvidenceKill
    runbook: evidence_per_step

hosts:
  default: fleet
  drivers:
    fleet: {driver: http, base_url: "{servicenow_url}/fleet"}
"""


def secret_forms(secret: str) -> dict[str, str]:
    return {
        "as is": secret,
        "base64": base64.b64encode(secret.encode()).decode().rstrip("="),
        "url-encoded": quote(secret, safe=""),
    }


@dataclass
class KilledRun:
    change: dict[str, Any]
    secret: str
    markers: Path
    settings: Settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def killed_run(
    temporal_client: Client, settings: Settings, sandbox: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[KilledRun]:
    root = tmp_path_factory.mktemp("evidence-kill")
    markers = root / "markers"
    markers.mkdir()
    registry = root / "runbooks.yaml"
    text = REGISTRY.replace("__MARKER_DIR__", str(markers))
    for name, marker in MARKERS.items():
        text = text.replace(f"__{name.upper()}__", marker)
    registry.write_text(text)
    secret = strong_secret("evd")
    isolated = settings.model_copy(update={"task_queue": f"evidence-kill-{uuid.uuid4().hex[:6]}"})
    env = {
        "CHANGELOOP_TASK_QUEUE": isolated.task_queue,
        "CHANGELOOP_RUNBOOKS": str(registry),
        "CHANGELOOP_SERVICENOW_USERNAME": INTEGRATION_USER[0],
        "CHANGELOOP_SERVICENOW_PASSWORD": INTEGRATION_USER[1],
        "CHANGELOOP_SECRET_NAMES": SECRET_NAME,
        SECRET_NAME: secret,
    }
    first = WorkerProcess(isolated, env, root / "first-worker.log")
    second = WorkerProcess(isolated, env, root / "second-worker.log")
    async with ServiceNowClient.from_settings(isolated) as sn:
        changes = Changes(sn)
        change = await changes.create(category="EvidenceKill")
        await first.start()
        try:
            await first.polling(temporal_client)
            handle = await start(temporal_client, isolated, change["number"])
            await wait_for(
                lambda: (markers / "waiting").exists(), timeout=60, message="the runbook reached its blocking step"
            )
        finally:
            assert first.process is not None
            first.process.kill()  # SIGKILL: no shutdown, the step's process and its activity die with it
            await first.process.wait()
        (markers / "release").touch()
        await second.start()
        try:
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            yield KilledRun(change, secret, markers, isolated)
        finally:
            await second.stop()


async def _tasks(sn: ServiceNowClient, change_sys_id: str) -> list[dict[str, Any]]:
    query = Query().eq("change_request", change_sys_id).order_by("number")
    return await sn.list("change_task", query, exclude_reference_link=True)


async def test_one_closed_task_per_step_with_the_state_the_step_ended_in_after_a_kill_mid_step(
    killed_run: KilledRun, sn_client: ServiceNowClient
) -> None:
    number = killed_run.change["number"]
    assert len((killed_run.markers / "waiting").read_text().splitlines()) >= 2, "the killed step ran again"

    tasks = await _tasks(sn_client, killed_run.change["sys_id"])

    runbook = runbook_workflow_id(number)
    assert [(t["correlation_id"], t["state"], t["close_code"]) for t in tasks] == [
        (f"{runbook}:print secret", ChangeTaskState.CLOSED.value, "successful"),
        (f"{runbook}:wait for release", ChangeTaskState.CLOSED.value, "successful"),
        (f"{runbook}:fail quoting it", ChangeTaskState.CLOSED.value, "unsuccessful"),
    ], "one task per step that ran (none for the step never reached), each closed once with its outcome"
    assert all(t["correlation_display"] == "changeloop" and t["change_task_type"] == "implementation" for t in tasks)
    assert all(t["cmdb_ci"] == killed_run.change["cmdb_ci"] for t in tasks), "the run's {host} is the task's CI"
    assert all(t["assignment_group"] for t in tasks), "routed to the CI's support group"
    notes = {t["correlation_id"].split(":", 1)[1]: t["close_notes"] for t in tasks}
    assert notes["wait for release"].startswith("Step 'wait for release' succeeded")
    assert MARKERS["second"] in notes["wait for release"], "the close notes quote the step's output"
    assert notes["fail quoting it"].startswith("Step 'fail quoting it' FAILED")
    assert MARKERS["third"] in notes["fail quoting it"] and REDACTED in notes["fail quoting it"]
    for form, value in secret_forms(killed_run.secret).items():
        assert all(value not in text for text in notes.values()), f"the secret ({form}) is in a task's close notes"


async def test_the_change_attachment_holds_every_step_output_and_no_configured_secret(
    killed_run: KilledRun, sn_client: ServiceNowClient
) -> None:
    number = killed_run.change["number"]
    files = await attachments.list_attachments(sn_client, "change_request", killed_run.change["sys_id"])
    assert [f.file_name for f in files] == [f"runbook-{number}.log"]

    log = (await attachments.download(sn_client, files[0].sys_id)).decode()

    for marker in MARKERS.values():
        assert marker in log, f"{marker}'s step output is not in the log"
    assert f"runbook 'evidence_per_step' for {number}, FAILED at step 'fail quoting it'" in log.splitlines()[0]
    assert "=== step 1/4 'print secret' - succeeded in " in log
    assert "=== step 4/4 'never reached' - not run ===" in log
    assert "=== step 3/4 'fail quoting it' - FAILED" in log and "refused: Authorization: ***" in log
    assert f"token {REDACTED}" in log and f"b64 {REDACTED}" in log and f"quoted {REDACTED}" in log, (
        "the step really printed the secret (now stars)"
    )
    for form, value in secret_forms(killed_run.secret).items():
        assert value not in log, f"the secret ({form}) is in the attachment"
    assert files[0].size == len(log.encode())


async def test_the_incident_carries_the_failing_step_output(killed_run: KilledRun, sn_client: ServiceNowClient) -> None:
    failed = f"change-{killed_run.change['number']}"

    async def incident() -> dict[str, Any] | None:
        return await sn_client.first("incident", Query().eq("correlation_id", failed), fields=["sys_id", "number"])

    found = await wait_for(incident, timeout=60, message="the incident is opened")
    files = await wait_for(
        lambda: attachments.list_attachments(sn_client, "incident", found["sys_id"]),
        timeout=60,
        message="the incident's attachment",
    )
    assert [f.file_name for f in files] == [f"{failed}.log"]
    text = (await attachments.download(sn_client, files[0].sys_id)).decode()
    assert "step 'fail quoting it'" in text and MARKERS["third"] in text and "refused: Authorization: ***" in text
    for form, value in secret_forms(killed_run.secret).items():
        assert value not in text, f"the secret ({form}) is in the incident's attachment"


async def test_a_repeated_close_uploads_nothing_twice(
    killed_run: KilledRun, temporal_client: Client, sn_client: ServiceNowClient, sandbox_control: SandboxControl
) -> None:
    """The runbook reset to the workflow task that scheduled its attachment: the run closes again, and the upload
    finds the file there. (Runs last in this module: the worker process is still up to run the reset.)"""
    number = killed_run.change["number"]
    runbook = temporal_client.get_workflow_handle(runbook_workflow_id(number))
    history = await runbook.fetch_history()
    events = list(history.events)
    attach_at = next(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "attach_file"
    )
    completed = next(
        e.event_id for e in reversed(events[:attach_at]) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    uploads = await sandbox_control.requests_to("POST", attachments.ATTACHMENT_TABLE)
    task_writes = await sandbox_control.requests_to("PATCH", "change_task")
    description = await runbook.describe()

    reset = await temporal_client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=temporal_client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=runbook.id, run_id=description.run_id),
            reason="issue 15: a repeated close",
            workflow_task_finish_event_id=completed,
            request_id=str(uuid.uuid4()),
        )
    )
    again = temporal_client.get_workflow_handle(runbook.id, run_id=reset.run_id)
    with pytest.raises(WorkflowFailureError):
        await again.result()

    status = await again.query("status", result_type=RunbookStatus)
    assert status.log.endswith("already attached)"), status.log
    assert await sandbox_control.requests_to("POST", attachments.ATTACHMENT_TABLE) == uploads, "nothing uploaded"
    assert await sandbox_control.requests_to("PATCH", "change_task") == task_writes
    files = await attachments.list_attachments(sn_client, "change_request", killed_run.change["sys_id"])
    assert [f.file_name for f in files] == [f"runbook-{number}.log"]
