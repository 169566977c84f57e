"""`POST /api/incidents/{number}/resolve`: a ServiceNow Business Rule on incident resolution (or any caller) closes
the loop on an incident that changeloop opened.

Same contract as the other shim endpoints: bearer auth (the shim's ApiGuard covers every /api/* path), ServiceNow
error envelopes, 422 naming every bad field. The workflow is found from the body's `correlation_id` when the rule
sends it (no call back into the instance), else from the incident's record. The `resolve` update validates and
answers once the incident is resolved; an incident already resolved in ServiceNow keeps its own close notes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from starter.incidents import IncidentLookupError, incident_workflow_for, resolve_incident
from starter.shim.deps import PrincipalDep, SettingsDep, TemporalDep
from starter.shim.errors import envelope, log
from workflows.incident.models import RESOLVE_NO_RESOLVER, RESOLVE_WRONG_INCIDENT, ResolveIncident

INCIDENT_NUMBER = r"^INC[0-9]{7}$"  # ASCII digits only (starter/shim/models.py)


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("resolved_by must not be empty")
    return value


class IncidentResolution(BaseModel):
    """What the rule sends: who resolved it and how; `fixed_by` names the execution or change that fixed it."""

    model_config = ConfigDict(extra="ignore")

    resolved_by: Annotated[str, Field(max_length=200), AfterValidator(_named)]
    close_code: str = Field(default="Solved (Permanently)", min_length=1, max_length=100)
    close_notes: str = Field(default="", max_length=4000)
    fixed_by: str = Field(default="", max_length=300)
    correlation_id: str = Field(default="", max_length=200)


router = APIRouter(tags=["incidents"])


@router.post("/api/incidents/{number}/resolve", status_code=202)
async def resolve(
    body: IncidentResolution,
    settings: SettingsDep,
    client: TemporalDep,
    principal: PrincipalDep,
    number: str = Path(pattern=INCIDENT_NUMBER, description="e.g. INC0010001"),
) -> JSONResponse:
    """Resolve a changeloop incident through its workflow's `resolve` update (state 6, close_code, close_notes).
    The resolver on record is the authenticated caller; a name it reports for someone else (the incident rule reports
    the ServiceNow user who resolved it) is kept as that caller's report, never as a bare name."""
    try:
        workflow_id = await incident_workflow_for(settings, number, body.correlation_id)
    except IncidentLookupError as exc:
        return envelope(404, "No Record found", str(exc))
    resolution = ResolveIncident(
        number=number,
        resolved_by=_resolver(body.resolved_by.strip(), principal.name),
        close_code=body.close_code,
        close_notes=body.close_notes,
        fixed_by=body.fixed_by,
    )
    try:
        status = await resolve_incident(client, workflow_id, resolution)
    except WorkflowUpdateFailedError as exc:
        return _refusal(exc)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return envelope(409, "Conflict", f"{workflow_id} is not running: the incident is no longer waiting")
    log.info(
        "shim.incident_resolved", number=number, workflow_id=workflow_id, by=body.resolved_by, caller=principal.name
    )
    return JSONResponse({"incident": number, "executionId": workflow_id, "status": status.phase.value}, status_code=202)


def _resolver(reported: str, caller: str) -> str:
    return caller if reported == caller else f"{reported} (reported by {caller})"


def _refusal(exc: WorkflowUpdateFailedError) -> JSONResponse:
    cause = exc.cause
    kind = cause.type if isinstance(cause, ApplicationError) else None
    if kind == RESOLVE_NO_RESOLVER:
        return envelope(422, "Invalid request", str(cause))
    if kind == RESOLVE_WRONG_INCIDENT:
        return envelope(404, "No Record found", str(cause))
    return envelope(409, "Conflict", str(cause or exc))
