"""`/api/sn_chg_rest/...`: the Change Management API (a plugin), for the subset changeloop uses.

From markdown/api-reference/rest-apis/change-management-api.md, paths, shapes and field names as documented:
- GET  change/standard/template              templates (std_change_record_producer): sysparm_query, name=value
                                             filters, order, sysparm_limit (500), sysparm_offset
- POST change/standard/{template_id}         a standard change from a template; `__meta.ignoredFields`
- GET  change/{sys_id}                        the change
- PATCH change/{sys_id}                       update; state moves obey the same change model as the Table API
- GET  change/{sys_id}/nextstates             available_states, state_label, state_transitions
- POST change/{sys_id}/conflict               start the conflict check; answers the worker's sys_id
- GET  change/{sys_id}/conflict               status, last_run, record_count, job_status, conflicts
Each path also answers with a version segment (`/api/sn_chg_rest/v1/change/...`). Calls pass the same gate as the
Table API (sandbox/gate.py) and the API acts as the caller: reading a change needs change_request's read ACL (404
otherwise), creating or updating one its create/write ACL (403), as sandbox/acl.py grants them by role.

Records come as objects whose every field is `{"display_value", "value"}` (dates add `display_value_internal`),
with typed values as in the documented samples: integer choice fields are JSON numbers (`"state": {"value":
-2.0}`), booleans are JSON booleans. A write the business rules refuse answers 400 (the API's documented code
for a request it cannot process) with the usual error envelope. With the setting `change_api` off every path
answers like an instance without the plugin: 400 "Requested URI does not represent any resource".
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from sandbox import conflicts
from sandbox.acl import Operation
from sandbox.business_rules import RuleViolation
from sandbox.change_model import ChangeState, Transition, state_label, transitions_from
from sandbox.errors import ApiError
from sandbox.gate import Caller, admit, after_write, not_found, readable, visible_rows
from sandbox.query import parse
from sandbox.render import RenderOptions, default_fields, render_value
from sandbox.routes_table import _body, acl_refusal
from sandbox.standard_changes import TemplateNotFound, create_standard
from sandbox.state import SandboxState
from sandbox.tables import Table, get_table

Record = dict[str, str]

_BOOLEANS = {"active", "on_hold", "outside_maintenance_schedule"}
_DATES = {
    "start_date",
    "end_date",
    "opened_at",
    "closed_at",
    "conflict_last_run",
    "last_checked",
    "sys_created_on",
    "sys_updated_on",
}
_TEMPLATE_LIMIT = 500


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


async def _plugin_installed(request: Request) -> None:
    if not _state(request).instance.settings.change_api:
        raise ApiError(400, "Requested URI does not represent any resource", None)


router = APIRouter(dependencies=[Depends(_plugin_installed)])


def _schema(name: str) -> Table:
    table = get_table(name)
    assert table is not None
    return table


def _typed(table: Table, name: str, raw: str) -> Any:
    if name in _BOOLEANS:
        return raw == "true"
    if raw != "" and (name in table.numeric or name == "sys_mod_count"):
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


def chg_record(request: Request, table: Table, record: Record) -> dict[str, Any]:
    """A record as this API answers it: every field {display_value, value}."""
    resolver = _state(request).instance.resolver(str(request.base_url))
    display = RenderOptions(display_value="true", exclude_reference_link=True)
    out: dict[str, Any] = {}
    for name in default_fields(table, record):
        raw = record.get(name, "")
        shown = render_value(table, record, name, display, resolver)
        field: dict[str, Any] = {"display_value": shown, "value": _typed(table, name, raw)}
        if name in _DATES:
            field["display_value_internal"] = raw
        out[name] = field
    return out


def _change(request: Request, caller: Caller, sys_id: str) -> Record:
    """The change if the caller may read it (sandbox/acl.py), else the instance's 404."""
    state = _state(request)
    change = readable(state, caller.user, "change_request", state.instance.lookup("change_request", sys_id))
    if change is None:
        raise not_found()
    return change


def _may_write(request: Request, caller: Caller, operation: Operation) -> None:
    """The API writes change_request records as the caller: the table's create/write ACLs apply (403)."""
    if not _state(request).access.allows(caller.user, "change_request", operation):
        raise acl_refusal(operation)


def _given(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Name-value pairs from the URL, overridden by the body (as the API documents)."""
    params = {k: v for k, v in request.query_params.items() if not k.startswith("sysparm_")}
    return {**params, **body}


# --- templates and standard changes ------------------------------------------------------------------------------


@router.get("/change/standard/template")
async def list_templates(request: Request) -> Response:
    caller = await admit(request, "table", "std_change_record_producer")
    table = _schema("std_change_record_producer")
    params = request.query_params
    query = params.get("sysparm_query", "")
    if not query:
        filters = [f"{k}={v}" for k, v in params.items() if not k.startswith("sysparm_") and k not in ("order",)]
        query = "^".join(filters)
    if params.get("order"):
        query = f"{query}^ORDERBY{params['order']}" if query else f"ORDERBY{params['order']}"
    instance = _state(request).instance
    with instance.store.lock:
        rows = parse(table, query).apply(instance.store.rows(table.name), instance.lookup)
    try:
        limit = int(params.get("sysparm_limit", _TEMPLATE_LIMIT)) or _TEMPLATE_LIMIT
        offset = max(0, int(params.get("sysparm_offset", 0)))
    except ValueError:
        raise ApiError(400, "Invalid parameter", "sysparm_limit and sysparm_offset are numbers") from None
    cut = visible_rows(_state(request), caller.user, table.name, rows[offset : offset + limit])
    page = [chg_record(request, table, r) for r in cut]
    return JSONResponse({"result": page}, headers={"X-Total-Count": str(len(rows))})


@router.post("/change/standard/{template_id}")
async def create_standard_change(request: Request, template_id: str) -> Response:
    caller = await admit(request, "table", "change_request")
    _may_write(request, caller, "create")
    given = _given(request, await _body(request))
    state = _state(request)
    try:
        change, ignored = create_standard(state.instance, template_id, given, caller.user)
    except TemplateNotFound:
        raise ApiError(404, "No Record found", f"No standard change template with sys_id {template_id}") from None
    except RuleViolation as exc:
        raise ApiError(400, "Operation Failed", exc.detail) from None
    state.stats.count_write("change_request")
    await after_write(caller)  # an injected "commit, then answer late" fault plays here as on the Table API
    result = chg_record(request, _schema("change_request"), change)
    result["__meta"] = {"ignoredFields": ignored}
    return JSONResponse({"result": result})


# --- one change --------------------------------------------------------------------------------------------------


@router.get("/change/{sys_id}")
async def get_change(request: Request, sys_id: str) -> Response:
    caller = await admit(request, "table", "change_request")
    change = _change(request, caller, sys_id)
    return JSONResponse({"result": chg_record(request, _schema("change_request"), change)})


@router.patch("/change/{sys_id}")
async def patch_change(request: Request, sys_id: str) -> Response:
    caller = await admit(request, "table", "change_request")
    _change(request, caller, sys_id)
    _may_write(request, caller, "write")
    given = _given(request, await _body(request))
    state = _state(request)
    try:
        written = state.instance.update("change_request", sys_id, given, caller.user)
    except RuleViolation as exc:
        raise ApiError(400, "Operation Failed", exc.detail) from None
    if written is None:
        raise not_found()
    if written.changed:
        state.stats.count_write("change_request")
    await after_write(caller)
    return JSONResponse({"result": chg_record(request, _schema("change_request"), written.record)})


def _sys_id(*parts: str) -> str:
    return hashlib.md5(":".join(parts).encode(), usedforsecurity=False).hexdigest()


def _condition(name: str, passed: bool) -> dict[str, Any]:
    return {"passed": passed, "condition": {"name": name, "description": None, "sys_id": _sys_id("condition", name)}}


def _transition(change: Record, arrow: Transition) -> dict[str, Any]:
    held = change.get("on_hold") == "true"
    conditions = []
    if arrow.target != ChangeState.CANCELED:
        conditions.append(_condition("Not On hold", not held))
    if arrow.by_approval:
        # The approval flow makes this move as soon as the stage's approvals are approved: until then the
        # condition has not passed, and it is never the caller's to make.
        conditions.append(_condition("Approvals of the stage approved", False))
    return {
        "sys_id": _sys_id(change.get("type", ""), arrow.source, arrow.target),
        "display_value": arrow.label,
        "from_state": arrow.source.value,
        "to_state": arrow.target.value,
        "transition_available": all(c["passed"] for c in conditions) and not arrow.by_approval,
        "automatic_transition": arrow.by_approval,
        "conditions": conditions,
    }


@router.get("/change/{sys_id}/nextstates")
async def next_states(request: Request, sys_id: str) -> Response:
    caller = await admit(request, "table", "change_request")
    change = _change(request, caller, sys_id)
    current = change.get("state", "")
    by_target: dict[str, list[dict[str, Any]]] = {}
    for arrow in transitions_from(change.get("type", ""), current):
        by_target.setdefault(arrow.target.value, []).append(_transition(change, arrow))
    available = [current] + [t for t, options in by_target.items() if any(o["transition_available"] for o in options)]
    labels = {value: state_label(value) for value in [current, *by_target]}
    result = {"available_states": available, "state_transitions": list(by_target.values()), "state_label": labels}
    return JSONResponse({"result": result})


# --- conflicts ---------------------------------------------------------------------------------------------------


@router.post("/change/{sys_id}/conflict")
async def start_conflict_check(request: Request, sys_id: str) -> Response:
    caller = await admit(request, "table", "change_request")
    change = _change(request, caller, sys_id)
    try:
        conflicts.run(_state(request).instance, change)
    except conflicts.ConflictCheckError as exc:
        raise ApiError(400, "Unable to start conflict checking", str(exc)) from None
    return JSONResponse({"result": uuid.uuid4().hex})


@router.get("/change/{sys_id}/conflict")
async def conflict_status(request: Request, sys_id: str) -> Response:
    caller = await admit(request, "table", "change_request")
    change = _change(request, caller, sys_id)
    if not change.get("conflict_last_run"):
        never: dict[str, Any] = {"status": "Not Run", "last_run": "", "record_count": "0", "job_status": ""}
        return JSONResponse({"result": {**never, "conflicts": []}})
    table = _schema("conflict")
    rows = conflicts.stored(_state(request).instance, sys_id)
    # change-management-api.md: after a run the status reads "Conflict" even when `conflicts` is empty.
    result: dict[str, Any] = {
        "status": "Conflict",
        "last_run": change["conflict_last_run"],
        "record_count": "1",
        "job_status": "2",
        "conflicts": [chg_record(request, table, r) for r in rows],
    }
    return JSONResponse({"result": result})
