"""The execution endpoints: `GET /api/executions/{executionId}/status` (Temporal's view plus the workflow's own) and
the approval gate's `approve` / `reject` through the validated `decide` update.

A decision made here is the authenticated principal's, never a typed name: the shim signs it with
CHANGELOOP_DECISION_KEY (workflows/gate/signing.py) so the gate's activity can tell it from one sent straight to the
Temporal frontend. Only changeloop's own executions can be read or decided here (EXECUTION_ID).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from config.principals import Principal
from config.settings import Settings
from starter.shim.deps import PrincipalDep, SettingsDep, TemporalDep
from starter.shim.errors import ShimError, log
from starter.shim.models import DecisionRequest, ExecutionStatus, Progress, Started, answer
from workflows.failures import describe
from workflows.gate.models import (
    GATE_EMPTY_APPROVER,
    GATE_NOT_PROVEN,
    GATE_UNKNOWN_APPROVER,
    UPDATE_DECIDE,
    DecideInput,
    Decision,
)
from workflows.gate.signing import signed
from workflows.status import QUERY_STATUS

# A query on a workflow whose worker is down would otherwise hang the HTTP request; the answer degrades instead.
QUERY_TIMEOUT = timedelta(seconds=3)
# Updates wait for a worker to run the validator; past this the caller gets 504 and may retry.
UPDATE_TIMEOUT = timedelta(seconds=30)
# changeloop's own executions (docs/architecture.md, "Contract"), and nothing else in the namespace.
EXECUTION_ID = r"^(change|runbook|wave|patch|flow|incident-for|reconcile)-[A-Za-z0-9._:-]{1,200}$"
# The contract's camelCase path parameter, under a Python name.
ExecutionId = Path(alias="executionId", pattern=EXECUTION_ID, description="the workflow ID, e.g. change-CHG0030001")

router = APIRouter(tags=["executions"])


@router.get("/api/executions/{executionId}/status", response_model=ExecutionStatus)
async def execution_status(settings: SettingsDep, client: TemporalDep, execution_id: str = ExecutionId) -> JSONResponse:
    """Temporal's view (describe) plus the workflow's own (`status` query): step, progress, result or error."""
    return answer(await _status(client, settings, execution_id))


@router.post("/api/executions/{executionId}/approve", status_code=202)
async def approve(
    decision: DecisionRequest,
    principal: PrincipalDep,
    settings: SettingsDep,
    client: TemporalDep,
    execution_id: str = ExecutionId,
) -> JSONResponse:
    """Approve the gate as the calling principal, through the `decide` update: judged by the gate, answered with
    the gate state."""
    return answer(await _decide(client, settings, principal, execution_id, decision, Decision.APPROVED), 202)


@router.post("/api/executions/{executionId}/reject", status_code=202)
async def reject(
    decision: DecisionRequest,
    principal: PrincipalDep,
    settings: SettingsDep,
    client: TemporalDep,
    execution_id: str = ExecutionId,
) -> JSONResponse:
    """Reject the gate as the calling principal, through the `decide` update."""
    return answer(await _decide(client, settings, principal, execution_id, decision, Decision.REJECTED), 202)


async def existing(client: Client, settings: Settings, workflow_id: str, run_id: str | None) -> Started:
    """The execution a duplicate delivery collapsed into. Its status is read, not assumed: it may have closed."""
    status = "RUNNING"
    try:
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        run_id = description.run_id
        status = description.status.name if description.status else status
    except RPCError:
        pass  # the start was refused, so the execution exists; a failed describe only costs us detail
    log.info("shim.duplicate", workflow_id=workflow_id, run_id=run_id)
    url = settings.execution_url(workflow_id, run_id)
    return Started(execution_id=workflow_id, run_id=run_id, status=status, url=url, duplicate=True)


async def gone(handle: WorkflowHandle[Any, Any]) -> ShimError:
    """NOT_FOUND means either "never existed" or "already closed"; describe tells the two apart."""
    try:
        description = await handle.describe()
    except RPCError:
        return ShimError(404, "No Record found", f"no execution {handle.id!r}")
    state = description.status.name if description.status else "CLOSED"
    return ShimError(409, "Conflict", f"execution {handle.id!r} is {state}; it no longer takes decisions")


async def _status(client: Client, settings: Settings, execution_id: str) -> ExecutionStatus:
    handle = client.get_workflow_handle(execution_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ShimError(404, "No Record found", f"no execution {execution_id!r}") from exc
        raise
    state = description.status or WorkflowExecutionStatus.RUNNING
    answer = ExecutionStatus(
        execution_id=execution_id,
        run_id=description.run_id,
        workflow_type=description.workflow_type,
        status=state.name,
        url=settings.execution_url(execution_id, description.run_id),
    )
    pinned = client.get_workflow_handle(execution_id, run_id=description.run_id)
    live = await _query_status(pinned)
    if state == WorkflowExecutionStatus.COMPLETED:
        answer.result = await pinned.result(follow_runs=False)
    elif state != WorkflowExecutionStatus.RUNNING:
        answer.error = await _failure(pinned, state)
    _fill_progress(answer, live if live is not None else answer.result)
    return answer


async def _query_status(handle: WorkflowHandle[Any, Any]) -> dict[str, Any] | None:
    """The workflow's own status; None when it cannot answer (no worker, closed and not replayable, no handler)."""
    try:
        value = await asyncio.wait_for(handle.query(QUERY_STATUS, rpc_timeout=QUERY_TIMEOUT), QUERY_TIMEOUT.seconds + 1)
    except Exception as exc:  # a degraded answer is better than a 500: describe already told us the state
        log.debug("shim.status_query_failed", workflow_id=handle.id, error=str(exc))
        return None
    return value if isinstance(value, dict) else None


def _fill_progress(status: ExecutionStatus, source: Any) -> None:
    """ChangeStatus and RunbookStatus both carry `step` and `progress`; a closed run's result carries `steps`."""
    if not isinstance(source, dict):
        return
    status.step = str(source.get("step") or "")
    if isinstance(source.get("phase"), str):
        status.phase = source["phase"]
    if isinstance(source.get("gate"), dict):
        status.gate = source["gate"]
    progress = source.get("progress")
    if isinstance(progress, dict):
        status.progress = Progress.model_validate(progress)
    elif isinstance(source.get("steps"), list):
        done = sum(1 for s in source["steps"] if isinstance(s, dict) and s.get("outcome") == "succeeded")
        status.progress = Progress(done=done, total=len(source["steps"]))


async def _failure(handle: WorkflowHandle[Any, Any], state: WorkflowExecutionStatus) -> str:
    try:
        await handle.result(follow_runs=False)
    except WorkflowFailureError as exc:
        # The workflow's own failure says what failed (the step); its root cause says why (the activity's error).
        return describe(exc.cause or exc)
    except Exception as exc:
        return str(exc)
    return state.name.lower()


async def _decide(
    client: Client,
    settings: Settings,
    principal: Principal,
    execution_id: str,
    request: DecisionRequest,
    decision: Decision,
) -> dict[str, Any]:
    if request.approver is not None and request.approver != principal.name:
        # Refused rather than ignored: a caller who typed someone else's name must learn it was not recorded.
        raise ShimError(
            422,
            "Invalid request",
            f"approver: decisions are recorded as the authenticated principal {principal.name!r}, not a typed "
            f"name; omit this field",
        )
    assert settings.decision_key is not None  # create_app refuses approval:decide without it
    handle = client.get_workflow_handle(execution_id)
    update = signed(
        settings.decision_key.get_secret_value(),
        DecideInput(approver=principal.name, decision=decision, comments=request.comments),
        execution_id,
        datetime.now(UTC),
    )
    try:
        gate = await handle.execute_update(UPDATE_DECIDE, update, rpc_timeout=UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise await gone(handle) from exc
        if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise ShimError(
                504, "Gateway Timeout", f"no worker answered the decide update on {execution_id!r}"
            ) from exc
        raise
    log.info("shim.decided", workflow_id=execution_id, decision=decision.value, approver=principal.name)
    return {"executionId": execution_id, "decision": decision.value, "gate": gate}


def _refusal(exc: WorkflowUpdateFailedError) -> ShimError:
    """The gate said no. Its message is the answer; the code says whose fault it is: not an approver, or a decision
    the gate could not prove, is 403; an empty approver 422; a gate that is not open is the execution's state (409)."""
    cause = exc.cause
    message = str(cause) if cause else str(exc)
    kind = cause.type if isinstance(cause, ApplicationError) else None
    if kind in (GATE_UNKNOWN_APPROVER, GATE_NOT_PROVEN):
        return ShimError(403, "Forbidden", message)
    if kind == GATE_EMPTY_APPROVER:
        return ShimError(422, "Invalid request", message)
    return ShimError(409, "Conflict", message)
