"""What ServiceNow's Business Rules call: an approved change (`POST /api/servicenow/change`) and an approval decided
in ServiceNow (`POST /api/servicenow/approval`). Idempotency comes from deterministic workflow IDs and the server's
ID conflict policy (workflows/starts.py), so a rule that delivers the same change five times gets one execution and
four answers naming it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

from starter.shim.deps import SettingsDep, TemporalDep
from starter.shim.errors import log
from starter.shim.executions import existing, gone
from starter.shim.models import ChangeWebhook, ServiceNowApproval, Started, answer
from workflows.change.models import SIGNAL_APPROVE, SIGNAL_REJECT, ApprovalInput, ChangeInput, change_workflow_id
from workflows.starts import start_change

router = APIRouter(tags=["servicenow"])


@router.post("/api/servicenow/change", status_code=202, response_model=Started)
async def change_approved(change: ChangeWebhook, settings: SettingsDep, client: TemporalDep) -> JSONResponse:
    """An approved change_request, as the Business Rule sends it: starts `change-<number>` exactly once."""
    # The server decides duplicates: a repeat, even after the run closed, never starts a second one.
    workflow_id, run_id, started = await start_change(
        client, settings, ChangeInput(number=change.number, source="webhook")
    )
    if not started:
        return answer(await existing(client, settings, workflow_id, run_id), 202)
    log.info("shim.change_started", number=change.number, workflow_id=workflow_id, run_id=run_id)
    return answer(
        Started(execution_id=workflow_id, run_id=run_id, url=settings.execution_url(workflow_id, run_id)), 202
    )


@router.post("/api/servicenow/approval", status_code=202)
async def servicenow_approval(approval: ServiceNowApproval, client: TemporalDep) -> JSONResponse:
    """An approval decided in ServiceNow: signals `approve` / `reject` on the waiting change workflow."""
    workflow_id = change_workflow_id(approval.number)
    handle = client.get_workflow_handle(workflow_id)
    signal = SIGNAL_APPROVE if approval.approval == "approved" else SIGNAL_REJECT
    try:
        await handle.signal(signal, ApprovalInput(approver=approval.approver, comments=approval.comments))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise await gone(handle) from exc
    log.info("shim.approval_signalled", workflow_id=workflow_id, signal=signal, approver=approval.approver)
    return answer({"executionId": workflow_id, "signal": signal, "status": "ACCEPTED"}, 202)
