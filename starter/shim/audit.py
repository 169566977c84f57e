"""`GET /api/executions/{executionId}/audit`: the audit export of the change an execution belongs to (starter/audit.py),
as JSON, or as Markdown with `?format=md`. Any execution of the change leads to the same page (its ChangeNumber)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from starter.audit import AuditError, build_audit, change_of_execution, to_markdown
from starter.shim.deps import SettingsDep, TemporalDep
from starter.shim.errors import ShimError
from starter.shim.executions import ExecutionId

router = APIRouter(tags=["executions"])


@router.get("/api/executions/{executionId}/audit")
async def execution_audit(
    settings: SettingsDep,
    client: TemporalDep,
    execution_id: str = ExecutionId,
    output: Literal["json", "md"] = Query("json", alias="format", description="json, or md for Markdown"),
) -> Response:
    """The change's ticket and journal, its executions with each activity's start, end and outcome, the approval
    and its proof, incidents, change tasks and attachments, cross-referenced."""
    try:
        number = await change_of_execution(client, execution_id)
        report = await build_audit(settings, client, number)
    except AuditError as exc:
        raise ShimError(404, "No Record found", str(exc)) from exc
    if output == "md":
        return PlainTextResponse(to_markdown(report), media_type="text/markdown; charset=utf-8")
    return JSONResponse(report.model_dump(mode="json"))
