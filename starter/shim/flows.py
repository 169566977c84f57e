"""`POST /api/flows/{flow}/run`: a registry runbook started by name with named inputs; 202 at once, then poll the
status or take the callback."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from config.settings import Settings
from ops import outbound
from starter.shim.deps import RegistryDep, SettingsDep, TemporalDep
from starter.shim.errors import ShimError, log
from starter.shim.executions import existing
from starter.shim.models import FlowRunRequest, Started, answer
from workflows.flow.models import FlowRun
from workflows.starts import start_flow

router = APIRouter(tags=["flows"])


@router.post("/api/flows/{flow}/run", status_code=202, response_model=Started)
async def run_flow(
    flow: str, run: FlowRunRequest, settings: SettingsDep, client: TemporalDep, registry: RegistryDep
) -> JSONResponse:
    """Start a registry runbook by name with named inputs; 202 at once, poll the status or take the callback."""
    runbook = registry.flow(flow)
    if runbook is None:
        known = ", ".join(sorted(registry.runbooks)) or "none"
        raise ShimError(404, "No Record found", f"no flow named {flow!r}; known flows: {known}")
    _check_inputs(run.inputs, runbook.inputs, runbook.optional_inputs)
    callback = str(run.callback_url) if run.callback_url else ""
    if callback:
        await _check_callback(callback, settings)
    workflow_id, run_id, started = await start_flow(
        client, settings, FlowRun(flow=flow, inputs=run.inputs, callback_url=callback), run.key or uuid.uuid4().hex
    )
    if not started:  # only reachable with a caller key: the key is the caller's idempotency token
        return answer(await existing(client, settings, workflow_id, run_id), 202)
    log.info("shim.flow_started", flow=flow, workflow_id=workflow_id, callback=bool(callback))
    return answer(
        Started(execution_id=workflow_id, run_id=run_id, url=settings.execution_url(workflow_id, run_id)), 202
    )


async def _check_callback(url: str, settings: Settings) -> None:
    """The worker will only call allowed hosts (ops/outbound.py): say so now rather than fail the run at its end. A
    listed name that does not resolve at this moment passes (the worker's callback retries)."""
    try:
        await outbound.check(url, outbound.Allowlist.parse(settings.outbound_allow))
    except outbound.OutboundRefused as exc:
        raise ShimError(422, "Invalid request", f"callbackUrl: {exc}") from None
    except outbound.OutboundUnreachable:
        pass


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
