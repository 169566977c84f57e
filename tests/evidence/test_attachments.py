"""`attach_file`: one file per (table, record, file name), scrubbed of the worker's secrets and capped, through the
Attachment API of the sandbox instance; a repeat or a retry after a lost answer uploads nothing twice."""

from __future__ import annotations

import uuid

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from config.settings import Settings
from servicenow import attachments
from servicenow.client import ServiceNowClient
from tests.changes import Changes
from tests.conftest import INTEGRATION_USER, WEBHOOK_TOKEN, SandboxControl
from tests.evidence.conftest import ATTACHMENT_CAP, Evidence
from workflows.evidence.models import AttachInput, AttachResult


def _output(lines: int, marker: str) -> str:
    return "\n".join(f"{marker} line {n:05d}: ok" for n in range(lines)) + "\n"


async def _uploads(control: SandboxControl) -> int:
    return await control.requests_to("POST", attachments.ATTACHMENT_TABLE)


async def test_a_file_is_attached_once_however_often_it_is_attached(
    evidence: Evidence, changes: Changes, sandbox_control: SandboxControl
) -> None:
    change = await changes.create()
    text = _output(20, "restart")
    request = AttachInput(table="change_request", sys_id=change["sys_id"], file_name="steps.log", text=text)
    before = await _uploads(sandbox_control)

    first, _ = await evidence.run("AttachTestWorkflow", request, AttachResult)
    again, _ = await evidence.run("AttachTestWorkflow", request.model_copy(update={"text": "other"}), AttachResult)

    assert first.uploaded and not again.uploaded and again.sys_id == first.sys_id
    assert await _uploads(sandbox_control) - before == 1, "the repeat looked the file up and uploaded nothing"
    files = await evidence.files("change_request", change["sys_id"])
    assert [f.file_name for f in files] == ["steps.log"]
    assert await attachments.download(evidence.sn, first.sys_id) == text.encode(), "the first text stays"
    assert first.size_bytes == len(text.encode()) and first.download_link.endswith(f"/{first.sys_id}/file")


async def test_an_upload_whose_answer_was_lost_is_found_by_its_retry(
    evidence: Evidence, changes: Changes, reset_faults: SandboxControl
) -> None:
    change = await changes.create()
    request = AttachInput(table="change_request", sys_id=change["sys_id"], file_name="lost.log", text="done\n")
    # The instance stores the file, then hangs past the client's 3 s: the activity fails and is retried.
    await reset_faults.set_faults(
        rules=[{"method": "POST", "table": "sys_attachment", "mode": "timeout_after_write", "hang_seconds": 4}]
    )
    before = await _uploads(reset_faults)

    result, attempts = await evidence.run("AttachTestWorkflow", request, AttachResult)

    assert attempts >= 2, "the lost answer made the activity retry"
    assert not result.uploaded, "the retry found the file the first attempt had stored"
    assert await _uploads(reset_faults) - before == 1
    assert len(await evidence.files("change_request", change["sys_id"], "lost.log")) == 1


async def test_the_file_holds_no_configured_secret(
    evidence: Evidence, evidence_settings: Settings, changes: Changes
) -> None:
    change = await changes.create()
    password = INTEGRATION_USER[1]
    text = (
        f"connecting as changeloop.integration with {password}\n"
        f"webhook token {WEBHOOK_TOKEN} accepted\n"
        "export DB_PASSWORD=hunter2-very-secret\n"
        "curl -H 'Authorization: Bearer eyJhbGciOi.payload.sig' https://deploy:s3cr3t-pass@repo.example/x\n"
        "restart: ok\n"
    )
    request = AttachInput(table="change_request", sys_id=change["sys_id"], file_name="secrets.log", text=text)

    result, _ = await evidence.run("AttachTestWorkflow", request, AttachResult)

    stored = (await attachments.download(evidence.sn, result.sys_id)).decode()
    for secret in (password, WEBHOOK_TOKEN, "hunter2-very-secret", "eyJhbGciOi.payload.sig", "s3cr3t-pass"):
        assert secret not in stored
    assert "restart: ok" in stored and "***" in stored
    assert evidence_settings.secret_values(), "the worker has configured secrets to scrub"


async def test_a_long_output_is_capped_keeping_its_head_and_its_end(evidence: Evidence, changes: Changes) -> None:
    change = await changes.create()
    text = _output(2000, "patch")  # about 50 KB
    request = AttachInput(table="change_request", sys_id=change["sys_id"], file_name="long.log", text=text)

    result, _ = await evidence.run("AttachTestWorkflow", request, AttachResult)

    stored = (await attachments.download(evidence.sn, result.sys_id)).decode()
    assert result.truncated and result.size_bytes == len(stored.encode()) <= ATTACHMENT_CAP
    assert stored.startswith("patch line 00000: ok") and stored.endswith("patch line 01999: ok\n")
    assert "bytes cut by changeloop" in stored


async def test_a_file_over_the_instance_limit_fails_without_retries(
    evidence: Evidence, changes: Changes, sandbox_url: str
) -> None:
    change = await changes.create()
    request = AttachInput(table="change_request", sys_id=change["sys_id"], file_name="big.log", text="x" * 3000)
    async with httpx.AsyncClient(base_url=f"{sandbox_url}/sandbox") as control:
        (await control.put("/properties", json={"com.glide.attachment.max_size": 0.001})).raise_for_status()  # 1 KB
        try:
            with pytest.raises(WorkflowFailureError) as failed:
                await evidence.run("AttachTestWorkflow", request, AttachResult)
        finally:
            (await control.put("/properties", json={"com.glide.attachment.max_size": 1024})).raise_for_status()

    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "BadRequest" and "max allowed upload limit" in cause.cause.message
    assert cause.retry_state is not None and cause.retry_state.name == "NON_RETRYABLE_FAILURE"
    assert await evidence.files("change_request", change["sys_id"]) == []


async def test_the_client_lists_downloads_and_deletes_through_the_attachment_api(
    sn_client: ServiceNowClient, changes: Changes
) -> None:
    change = await changes.create()
    name = f"note-{uuid.uuid4().hex[:6]}.csv"
    meta = await attachments.upload(sn_client, "change_request", change["sys_id"], name, b"a,b\n1,2\n", "text/csv")

    assert meta.content_type == "text/csv" and meta.size == 8 and meta.table_sys_id == change["sys_id"]
    found = await attachments.find(sn_client, "change_request", change["sys_id"], name)
    assert found is not None and found.sys_id == meta.sys_id
    assert await attachments.download(sn_client, meta.sys_id) == b"a,b\n1,2\n"
    await attachments.delete(sn_client, meta.sys_id)
    assert await attachments.find(sn_client, "change_request", change["sys_id"], name) is None
