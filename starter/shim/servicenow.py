"""What ServiceNow's Business Rules call (deploy/servicenow/). Each is a hint that makes a workflow read ServiceNow
again, never an instruction: the body's number (and sys_id) are all the shim takes from it.

- `POST /api/servicenow/change`: a change was approved; starts `change-<number>` exactly once. Idempotency comes
  from deterministic workflow IDs and the server's ID conflict policy (workflows/starts.py), so a rule that
  delivers the same change five times gets one execution and four answers naming it.
- `POST /api/servicenow/approval`: an approval record was decided; the change's gate reads the records now.
- `POST /api/servicenow/change/event`: the change was canceled, put on hold or rescheduled; recorded by the change.

All three need the scope change:webhook, the only scope the Business Rules' token has.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

from starter.shim.deps import SettingsDep, TemporalDep
from starter.shim.errors import log
from starter.shim.executions import existing
from starter.shim.models import ChangeEvent, ChangeWebhook, ServiceNowApproval, Started, answer
from workflows.change.models import SIGNAL_TICKET_CHANGED, ChangeInput, TicketEvent, change_workflow_id
from workflows.gate.models import SIGNAL_CHECK_APPROVALS
from workflows.starts import start_change

router = APIRouter(tags=["servicenow"])


@router.post("/api/servicenow/change", status_code=202, response_model=Started)
async def change_approved(change: ChangeWebhook, settings: SettingsDep, client: TemporalDep) -> JSONResponse:
    """A change_request the Business Rule saw approved: starts `change-<number>` exactly once. The workflow reads
    the change from ServiceNow and runs it only if ServiceNow says it may (approved, Scheduled, not on hold)."""
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
    """An approval of the change was decided in ServiceNow: the change's gate reads the approval records now. The
    body's approver and decision are not taken: the record says who decided, and whether they may."""
    return answer(await _hint(client, approval.number, SIGNAL_CHECK_APPROVALS, None), 202)


@router.post("/api/servicenow/change/event", status_code=202)
async def change_event(event: ChangeEvent, client: TemporalDep) -> JSONResponse:
    """The change was canceled, put on hold or rescheduled in ServiceNow: the change workflow records it."""
    hint = TicketEvent.model_validate(event.model_dump())
    return answer(await _hint(client, event.number, SIGNAL_TICKET_CHANGED, hint), 202)


async def _hint(client: Any, number: str, signal: str, arg: Any) -> dict[str, str]:
    """Signal `change-<number>`. A hint for an execution that does not run is not an error: an approval decided
    before the change is Scheduled has no execution yet (NO_EXECUTION), one after it closed has nothing to do
    (CLOSED); the rule that sent it has nothing to retry either way."""
    workflow_id = change_workflow_id(number)
    handle = client.get_workflow_handle(workflow_id)
    try:
        await (handle.signal(signal) if arg is None else handle.signal(signal, arg))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            await handle.describe()
            status = "CLOSED"
        except RPCError:
            status = "NO_EXECUTION"
        log.info("shim.hint_not_delivered", workflow_id=workflow_id, signal=signal, status=status)
        return {"executionId": workflow_id, "signal": signal, "status": status}
    log.info("shim.hint_delivered", workflow_id=workflow_id, signal=signal)
    return {"executionId": workflow_id, "signal": signal, "status": "DELIVERED"}
