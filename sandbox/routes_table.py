"""`/api/now/table/{table}[/{sys_id}]`: the Table API with the instance's envelopes, headers and status codes.

Every request passes the gate (sandbox/gate.py: latency, faults, auth, rate limits), then the table's ACLs
(sandbox/acl.py). Lists follow markdown/api-reference/rest-apis/c_TableAPI.md:
- `sysparm_limit` / `sysparm_offset` cut the page BEFORE the row-level read ACLs run ("This limit is applied before
  ACL evaluation"), so a page may come back short or empty while more rows follow;
- `X-Total-Count` is the query's `select count(*)` (see sysparm_no_count), i.e. every row the query matches
  whether or not the caller may read it, and the `Link` header's first/prev/next/last are computed from that same
  count: `next` is there while `offset + limit < X-Total-Count`, whatever the page held. A client pages by
  `offset + limit` and follows `next` until it is absent ("use sysparm_offset=sysparm_offset+sysparm_limit, until
  you reach the end of all records");
- `sysparm_no_count=true` leaves X-Total-Count out, `sysparm_suppress_pagination_header=true` leaves Link out.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox import attachments, dictionary
from sandbox.acl import ROLE_TABLES, Operation, sync_role_tables
from sandbox.business_rules import RuleViolation
from sandbox.errors import ApiError
from sandbox.faults import Fault
from sandbox.gate import Caller, admit, after_write, not_found, readable, sandbox_state, visible_rows
from sandbox.render import DisplayMode, RenderOptions, render_record
from sandbox.state import SandboxState
from sandbox.store import Record
from sandbox.tables import Table, get_table

router = APIRouter()

DEFAULT_LIMIT = 10000

_ACL_VERBS = {"create": "Insert", "write": "Update", "delete": "Delete"}


def _state(request: Request) -> SandboxState:
    return sandbox_state(request)


# The names routers written against the first gate used (a Table-API-like router may still import them).
async def _gate(request: Request, table: str) -> tuple[str, Fault | None]:
    caller = await admit(request, "table", table)
    return caller.user, caller.fault


async def _after_write(fault: Fault | None) -> None:
    await after_write(Caller("", frozenset(), fault))


_not_found = not_found


def _table(name: str) -> Table:
    table = get_table(name)
    if table is None:
        raise ApiError(400, f"Invalid table {name}", None)
    return table


def _options(request: Request) -> RenderOptions:
    params = request.query_params
    mode = params.get("sysparm_display_value", "false").lower()
    display: DisplayMode = "true" if mode == "true" else "all" if mode == "all" else "false"
    fields = tuple(f.strip() for f in params.get("sysparm_fields", "").split(",") if f.strip()) or None
    return RenderOptions(
        display_value=display,
        exclude_reference_link=params.get("sysparm_exclude_reference_link", "false").lower() == "true",
        fields=fields,
    )


def _int_param(request: Request, name: str, default: int) -> int:
    try:
        return max(0, int(request.query_params.get(name, default)))
    except ValueError:
        return default


def _render(request: Request, table: Table, record: dict[str, str]) -> dict[str, Any]:
    resolver = _state(request).instance.resolver(str(request.base_url))
    return render_record(table, record, _options(request), resolver)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Exception while reading request", "The payload is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Exception while reading request", "The payload is not a JSON object.")
    return body


def _page_links(request: Request, offset: int, limit: int, total: int) -> str:
    """The instance's Link header: first, prev (offset > 0), next (more rows), last — full URLs."""

    def url(at: int) -> str:
        params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("sysparm_offset", "sysparm_limit")]
        params += [("sysparm_limit", str(limit)), ("sysparm_offset", str(at))]
        return f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(params)}"

    last = ((total - 1) // limit) * limit if total and limit else 0
    links = [(url(0), "first")]
    if offset > 0:
        links.append((url(max(0, offset - limit)), "prev"))
    if limit and offset + limit < total:
        links.append((url(offset + limit), "next"))
    links.append((url(last), "last"))
    return ",".join(f'<{link}>;rel="{rel}"' for link, rel in links)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def _rows(state: SandboxState, table: str, encoded_query: str) -> list[Record]:
    if table in ROLE_TABLES:
        sync_role_tables(state.access, state.instance)
    dictionary.sync(state.instance, table)  # sys_db_object / sys_dictionary: the schema's rows (sandbox/dictionary.py)
    return state.instance.select(table, encoded_query)


def _require(state: SandboxState, caller: Caller, table: str, operation: Operation) -> None:
    if not state.access.allows(caller.user, table, operation):
        raise acl_refusal(operation)


def acl_refusal(operation: Operation) -> ApiError:
    """403 for a write the caller's roles do not allow (r_RESTAPIHTTPResponseCodes.md: "ACL failures")."""
    verb = _ACL_VERBS.get(operation, "Read")
    return ApiError(403, "Operation Failed", f"ACL Exception {verb} Failed due to security constraints")


@router.get("/api/now/table/{table}")
async def list_records(request: Request, table: str) -> Response:
    caller = await admit(request, "table", table)
    schema = _table(table)
    state = _state(request)
    limit = _int_param(request, "sysparm_limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
    offset = _int_param(request, "sysparm_offset", 0)
    rows = _rows(state, table, request.query_params.get("sysparm_query", ""))
    # The limit cuts the page first; the read ACLs then drop what the caller may not see (c_TableAPI.md).
    cut = rows[offset : offset + limit]
    visible = visible_rows(state, caller.user, table, cut)
    page = [_render(request, schema, r) for r in visible]
    await state.profile.pause(state.profile.rows_delay(len(page)))
    headers: dict[str, str] = {}
    if not _flag(request, "sysparm_no_count"):
        headers["X-Total-Count"] = str(len(rows))
    if not _flag(request, "sysparm_suppress_pagination_header"):
        headers["Link"] = _page_links(request, offset, limit, len(rows))
    return JSONResponse({"result": page}, headers=headers)


@router.get("/api/now/table/{table}/{sys_id}")
async def get_record(request: Request, table: str, sys_id: str) -> Response:
    caller = await admit(request, "table", table)
    schema = _table(table)
    state = _state(request)
    if table in ROLE_TABLES:
        sync_role_tables(state.access, state.instance)
    record = readable(state, caller.user, table, state.instance.lookup(table, sys_id))
    if record is None:
        raise not_found()
    return JSONResponse({"result": _render(request, schema, record)})


@router.post("/api/now/table/{table}")
async def create_record(request: Request, table: str) -> Response:
    caller = await admit(request, "table", table)
    schema = _table(table)
    state = _state(request)
    _require(state, caller, table, "create")
    body = await _body(request)
    try:
        record = state.instance.create(table, body, caller.user)
    except RuleViolation as exc:
        raise ApiError(403, "Operation Failed", exc.detail) from None
    state.stats.count_write(table)
    await after_write(caller)
    location = f"{str(request.base_url).rstrip('/')}/api/now/table/{table}/{record['sys_id']}"
    return JSONResponse({"result": _render(request, schema, record)}, status_code=201, headers={"Location": location})


@router.api_route("/api/now/table/{table}/{sys_id}", methods=["PUT", "PATCH"])
async def update_record(request: Request, table: str, sys_id: str) -> Response:
    # PUT and PATCH both update only the fields given, as on the instance.
    caller = await admit(request, "table", table)
    schema = _table(table)
    state = _state(request)
    if readable(state, caller.user, table, state.instance.lookup(table, sys_id)) is None:
        raise not_found()
    _require(state, caller, table, "write")
    body = await _body(request)
    try:
        result = state.instance.update(table, sys_id, body, caller.user)
    except RuleViolation as exc:
        raise ApiError(403, "Operation Failed", exc.detail) from None
    if result is None:
        raise not_found()
    if result.changed:
        state.stats.count_write(table)
    await after_write(caller)
    return JSONResponse({"result": _render(request, schema, result.record)})


@router.delete("/api/now/table/{table}/{sys_id}")
async def delete_record(request: Request, table: str, sys_id: str) -> Response:
    caller = await admit(request, "table", table)
    _table(table)
    state = _state(request)
    if readable(state, caller.user, table, state.instance.lookup(table, sys_id)) is None:
        raise not_found()
    _require(state, caller, table, "delete")
    # An attachment's bytes go with its record, whichever API deletes it.
    deleted = (
        attachments.remove(state.instance, sys_id)
        if state.instance.store.class_of(sys_id) == attachments.ATTACHMENT_TABLE
        else state.instance.delete(table, sys_id)
    )
    if not deleted:
        raise not_found()
    state.stats.count_write(table)
    await after_write(caller)
    return Response(status_code=204)
