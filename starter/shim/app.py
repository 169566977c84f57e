"""The starter shim: ServiceNow (or any caller) → Temporal over HTTP, the contract of DESIGN.md §4.

It holds no state of its own. Idempotency comes from deterministic workflow IDs and the server's ID conflict
policy, so a Business Rule that delivers the same change five times gets one execution and four answers naming it.
Every refusal (401/400/413/422/404) happens before any Temporal call that could start something.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from config.registry import Registry
from config.settings import Settings
from ops.logs import get_logger
from starter.shim.guard import ApiGuard, envelope
from starter.shim.incidents import install_incident_routes
from starter.shim.models import (
    ChangeWebhook,
    DecisionRequest,
    ExecutionStatus,
    FlowRunRequest,
    Health,
    Progress,
    ServiceNowApproval,
    Started,
)
from starter.shim.ops import RequestMetrics, install_ops
from workflows import search_attributes
from workflows.change.models import (
    GATE_EMPTY_APPROVER,
    GATE_UNKNOWN_APPROVER,
    SIGNAL_APPROVE,
    SIGNAL_REJECT,
    UPDATE_DECIDE,
    ApprovalInput,
    ChangeInput,
    DecideInput,
    Decision,
    change_workflow_id,
)
from workflows.flow.models import FlowRun, flow_workflow_id
from workflows.starts import start_change
from workflows.status import QUERY_STATUS

FLOW_WORKFLOW = "FlowRunWorkflow"
# A query on a workflow whose worker is down would otherwise hang the HTTP request; the answer degrades instead.
QUERY_TIMEOUT = timedelta(seconds=3)
# Updates wait for a worker to run the validator; past this the caller gets 504 and may retry.
UPDATE_TIMEOUT = timedelta(seconds=30)

log = get_logger("changeloop.shim")
# The contract's camelCase path parameter, under a Python name.
ExecutionId = Path(alias="executionId", description="the workflow ID, e.g. change-CHG0030001")


class ShimError(Exception):
    """A refusal with its HTTP code; rendered as the ServiceNow envelope."""

    def __init__(self, status: int, message: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.message, self.detail = status, message, detail


def _answer(model: Started | ExecutionStatus | Health | dict[str, Any], status: int = 200) -> JSONResponse:
    body = model if isinstance(model, dict) else model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return JSONResponse(body, status_code=status)


def create_app(settings: Settings, client: Client, registry: Registry) -> FastAPI:
    if settings.webhook_token is None or not settings.webhook_token.get_secret_value():
        raise ValueError("the shim needs CHANGELOOP_WEBHOOK_TOKEN: every /api/* call is checked against it")
    app = FastAPI(
        title="changeloop starter shim",
        version="1",
        description="ServiceNow → Temporal: approved changes and flow runs start durable executions.",
        # A Business Rule whose REST message lacks a Content-Type header still sends JSON: read it as such.
        strict_content_type=False,
    )
    _install_error_handlers(app)
    _install_routes(app, settings, client, registry)
    install_incident_routes(app, settings, client)  # POST /api/incidents/{number}/resolve
    install_ops(app, settings, client, registry)  # /readyz, /metrics, /codec/* (starter/shim_ops.py)
    # Added last = outermost: the access log and the request counters see every answer, the guard's refusals too.
    app.add_middleware(ApiGuard, token=settings.webhook_token.get_secret_value())
    app.add_middleware(RequestMetrics)
    return app


# -- errors ------------------------------------------------------------------------------------------------------------
def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "number") → "number"; ("body", "inputs", "host") → "inputs.host": the names a caller wrote.
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        broken = [e for e in errors if e.get("type") == "json_invalid"]
        if broken:
            reason = (broken[0].get("ctx") or {}).get("error", "JSON decode error")
            where = broken[0]["loc"][-1] if broken[0].get("loc") else "?"
            return envelope(400, "Invalid JSON", f"malformed JSON at character {where}: {reason}")
        problems = [f"{_field(tuple(e['loc']))}: {e['msg']}" for e in errors]
        return envelope(422, "Invalid request", "; ".join(problems))

    @app.exception_handler(ShimError)
    async def refused(request: Request, exc: ShimError) -> JSONResponse:
        return envelope(exc.status, exc.message, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "No Record found", 405: "Method not allowed"}
        return envelope(exc.status_code, messages.get(exc.status_code, "Request failed"), str(exc.detail))

    @app.exception_handler(RPCError)
    async def temporal_error(request: Request, exc: RPCError) -> JSONResponse:
        log.warning("shim.temporal_error", status=exc.status.name, error=exc.message)
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return envelope(503, "Service Unavailable", f"Temporal did not answer: {exc.message}")
        return envelope(502, "Temporal error", exc.message)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("shim.unhandled", path=request.url.path)
        return envelope(500, "Internal Server Error", type(exc).__name__)


# -- routes ------------------------------------------------------------------------------------------------------------
def _install_routes(app: FastAPI, settings: Settings, client: Client, registry: Registry) -> None:
    @app.post("/api/servicenow/change", status_code=202, response_model=Started, tags=["servicenow"])
    async def change_approved(change: ChangeWebhook) -> JSONResponse:
        """An approved change_request, as the Business Rule sends it: starts `change-<number>` exactly once."""
        # The server decides duplicates: a repeat, even after the run closed, never starts a second one.
        workflow_id, run_id, started = await start_change(
            client, settings, ChangeInput(number=change.number, source="webhook")
        )
        if not started:
            return _answer(await _existing(client, settings, workflow_id, run_id), 202)
        log.info("shim.change_started", number=change.number, workflow_id=workflow_id, run_id=run_id)
        return _answer(
            Started(execution_id=workflow_id, run_id=run_id, url=settings.execution_url(workflow_id, run_id)), 202
        )

    @app.post("/api/servicenow/approval", status_code=202, tags=["servicenow"])
    async def servicenow_approval(approval: ServiceNowApproval) -> JSONResponse:
        """An approval decided in ServiceNow: signals `approve` / `reject` on the waiting change workflow."""
        workflow_id = change_workflow_id(approval.number)
        handle = client.get_workflow_handle(workflow_id)
        signal = SIGNAL_APPROVE if approval.approval == "approved" else SIGNAL_REJECT
        try:
            await handle.signal(signal, ApprovalInput(approver=approval.approver, comments=approval.comments))
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            raise await _gone(handle) from exc
        log.info("shim.approval_signalled", workflow_id=workflow_id, signal=signal, approver=approval.approver)
        return _answer({"executionId": workflow_id, "signal": signal, "status": "ACCEPTED"}, 202)

    @app.post("/api/flows/{flow}/run", status_code=202, response_model=Started, tags=["flows"])
    async def run_flow(flow: str, run: FlowRunRequest) -> JSONResponse:
        """Start a registry runbook by name with named inputs; 202 at once, poll the status or take the callback."""
        runbook = registry.flow(flow)
        if runbook is None:
            known = ", ".join(sorted(registry.runbooks)) or "none"
            raise ShimError(404, "No Record found", f"no flow named {flow!r}; known flows: {known}")
        _check_inputs(run.inputs, runbook.inputs, runbook.optional_inputs)
        workflow_id = flow_workflow_id(flow, run.key or uuid.uuid4().hex)
        callback = str(run.callback_url) if run.callback_url else ""
        try:
            handle = await client.start_workflow(
                FLOW_WORKFLOW,
                FlowRun(flow=flow, inputs=run.inputs, callback_url=callback),
                id=workflow_id,
                task_queue=settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes([SearchAttributePair(search_attributes.RUNBOOK, flow)]),
            )
        except WorkflowAlreadyStartedError as exc:
            # Only reachable with a caller key: the key is the caller's idempotency token.
            return _answer(await _existing(client, settings, workflow_id, exc.run_id), 202)
        log.info("shim.flow_started", flow=flow, workflow_id=workflow_id, callback=bool(callback))
        run_id = handle.result_run_id
        return _answer(
            Started(execution_id=workflow_id, run_id=run_id, url=settings.execution_url(workflow_id, run_id)), 202
        )

    @app.get("/api/executions/{executionId}/status", response_model=ExecutionStatus, tags=["executions"])
    async def execution_status(execution_id: str = ExecutionId) -> JSONResponse:
        """Temporal's view (describe) plus the workflow's own (`status` query): step, progress, result or error."""
        return _answer(await _status(client, settings, execution_id))

    @app.post("/api/executions/{executionId}/approve", status_code=202, tags=["executions"])
    async def approve(decision: DecisionRequest, execution_id: str = ExecutionId) -> JSONResponse:
        """Approve the gate through the `decide` update: validated by the workflow, answered with the gate state."""
        return _answer(await _decide(client, execution_id, decision, Decision.APPROVED), 202)

    @app.post("/api/executions/{executionId}/reject", status_code=202, tags=["executions"])
    async def reject(decision: DecisionRequest, execution_id: str = ExecutionId) -> JSONResponse:
        """Reject the gate through the `decide` update."""
        return _answer(await _decide(client, execution_id, decision, Decision.REJECTED), 202)

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> JSONResponse:
        """200 when Temporal answers a health check, 503 otherwise. No auth: load balancers call it."""
        try:
            healthy = await client.service_client.check_health(timeout=timedelta(seconds=2))
        except Exception as exc:  # any failure to reach the server is "unavailable", the probe must not 500
            return _answer(Health(status="unavailable", temporal=settings.temporal_address, detail=str(exc)), 503)
        if not healthy:
            return _answer(Health(status="unavailable", temporal=settings.temporal_address, detail="not serving"), 503)
        return _answer(Health(status="ok", temporal=settings.temporal_address))


def _check_inputs(given: dict[str, str], required: list[str], optional: list[str]) -> None:
    """Names are case-sensitive: `Host` is not `host`, and saying so beats silently running with a default."""
    problems = [f"inputs.{name}: required input missing" for name in required if name not in given]
    allowed = set(required) | set(optional)
    problems += [
        f"inputs.{name}: unknown input (allowed: {', '.join(sorted(allowed)) or 'none'})"
        for name in given
        if name not in allowed
    ]
    if problems:
        raise ShimError(422, "Invalid request", "; ".join(problems))


# -- Temporal helpers ----------------------------------------------------------------------------------------------------
async def _existing(client: Client, settings: Settings, workflow_id: str, run_id: str | None) -> Started:
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


async def _gone(handle: WorkflowHandle[Any, Any]) -> ShimError:
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


def _fill_progress(answer: ExecutionStatus, source: Any) -> None:
    """ChangeStatus and RunbookStatus both carry `step` and `progress`; a closed run's result carries `steps`."""
    if not isinstance(source, dict):
        return
    answer.step = str(source.get("step") or "")
    if isinstance(source.get("phase"), str):
        answer.phase = source["phase"]
    if isinstance(source.get("gate"), dict):
        answer.gate = source["gate"]
    progress = source.get("progress")
    if isinstance(progress, dict):
        answer.progress = Progress.model_validate(progress)
    elif isinstance(source.get("steps"), list):
        done = sum(1 for s in source["steps"] if isinstance(s, dict) and s.get("outcome") == "succeeded")
        answer.progress = Progress(done=done, total=len(source["steps"]))


async def _failure(handle: WorkflowHandle[Any, Any], state: WorkflowExecutionStatus) -> str:
    try:
        await handle.result(follow_runs=False)
    except WorkflowFailureError as exc:
        # The workflow's own failure says what failed (the step); its root cause says why (the activity's error).
        top: BaseException = exc.cause or exc
        root = top
        while isinstance(getattr(root, "cause", None), BaseException):
            root = root.cause  # type: ignore[attr-defined]
        return str(top) if root is top or str(root) in str(top) else f"{top} (cause: {root})"
    except Exception as exc:
        return str(exc)
    return state.name.lower()


async def _decide(client: Client, execution_id: str, request: DecisionRequest, decision: Decision) -> dict[str, Any]:
    handle = client.get_workflow_handle(execution_id)
    update = DecideInput(approver=request.approver, decision=decision, comments=request.comments)
    try:
        gate = await handle.execute_update(UPDATE_DECIDE, update, rpc_timeout=UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise await _gone(handle) from exc
        if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise ShimError(
                504, "Gateway Timeout", f"no worker answered the decide update on {execution_id!r}"
            ) from exc
        raise
    log.info("shim.decided", workflow_id=execution_id, decision=decision.value, approver=request.approver)
    return {"executionId": execution_id, "decision": decision.value, "gate": gate}


def _refusal(exc: WorkflowUpdateFailedError) -> ShimError:
    """The workflow's validator said no. Its message is the answer; the code says whose fault it is: a bad
    approver is the caller's input (422), a gate that is not open is the execution's state (409)."""
    cause = exc.cause
    message = str(cause) if cause else str(exc)
    kind = cause.type if isinstance(cause, ApplicationError) else None
    if kind == GATE_UNKNOWN_APPROVER:
        return ShimError(403, "Forbidden", message)
    if kind == GATE_EMPTY_APPROVER:
        return ShimError(422, "Invalid request", message)
    return ShimError(409, "Conflict", message)
