"""`/api/now/table/{table}[/{sys_id}]`: the Table API with the instance's envelopes, headers and status codes.

Every request passes the same gate in the order a real request meets trouble: injected latency and faults
(the "network" and the node), then authentication, then the per-user rate limit, then the table itself.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox.business_rules import RuleViolation
from sandbox.errors import ApiError
from sandbox.faults import Fault
from sandbox.render import DisplayMode, RenderOptions, render_record
from sandbox.state import SandboxState
from sandbox.tables import Table, get_table

router = APIRouter()

DEFAULT_LIMIT = 10000


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


async def _gate(request: Request, table: str) -> tuple[str, Fault | None]:
    """Faults, auth and rate limit; answers the user and a fault still to play after the write (if any)."""
    state = _state(request)
    state.stats.count_request(request.method, table)
    if state.faults.config.latency_ms:
        await asyncio.sleep(state.faults.config.latency_ms / 1000)
    fault = state.faults.pick(request.method, table)
    if fault is not None:
        state.stats.count_fault(fault.mode)
        if not fault.after_write:
            await _play(fault)
    user = state.auth.user_for(request.headers.get("authorization"))
    if user is None:
        raise ApiError(401, "User Not Authenticated", "Required to provide Auth information")
    decision = state.faults.take(user)
    if not decision.allowed:
        raise ApiError(
            429,
            "Rate limit exceeded",
            f"Too many requests for user {user}; retry after {decision.retry_after} seconds",
            headers={
                "Retry-After": str(decision.retry_after),
                "X-RateLimit-Limit": str(decision.limit),
                "X-RateLimit-Remaining": str(decision.remaining),
                "X-RateLimit-Reset": str(decision.reset_epoch),
            },
        )
    return user, fault


async def _play(fault: Fault) -> None:
    """A fault that fires before anything is written: an error now, or a hang then a gateway timeout."""
    if fault.status == 429:
        raise ApiError(429, "Rate limit exceeded", "Injected rate limit", headers=_injected_rate_headers())
    if fault.status:
        raise ApiError(fault.status, "Internal Server Error" if fault.status == 500 else "Service Unavailable", "")
    await asyncio.sleep(fault.hang_seconds)
    raise ApiError(504, "Gateway Timeout", "The transaction did not complete in time")


def _injected_rate_headers() -> dict[str, str]:
    return {"Retry-After": "1", "X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"}


async def _after_write(fault: Fault | None) -> None:
    """`timeout_after_write`: the record is committed, then the answer is late — the retry-duplicates trap."""
    if fault is not None and fault.after_write:
        await asyncio.sleep(fault.hang_seconds)


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


def _not_found() -> ApiError:
    return ApiError(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")


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


@router.get("/api/now/table/{table}")
async def list_records(request: Request, table: str) -> Response:
    await _gate(request, table)
    schema = _table(table)
    limit = _int_param(request, "sysparm_limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
    offset = _int_param(request, "sysparm_offset", 0)
    rows = _state(request).instance.select(table, request.query_params.get("sysparm_query", ""))
    page = [_render(request, schema, r) for r in rows[offset : offset + limit]]
    headers = {"X-Total-Count": str(len(rows)), "Link": _page_links(request, offset, limit, len(rows))}
    return JSONResponse({"result": page}, headers=headers)


@router.get("/api/now/table/{table}/{sys_id}")
async def get_record(request: Request, table: str, sys_id: str) -> Response:
    await _gate(request, table)
    schema = _table(table)
    record = _state(request).instance.lookup(table, sys_id)
    if record is None:
        raise _not_found()
    return JSONResponse({"result": _render(request, schema, record)})


@router.post("/api/now/table/{table}")
async def create_record(request: Request, table: str) -> Response:
    user, fault = await _gate(request, table)
    schema = _table(table)
    body = await _body(request)
    state = _state(request)
    try:
        record = state.instance.create(table, body, user)
    except RuleViolation as exc:
        raise ApiError(403, "Operation Failed", exc.detail) from None
    state.stats.count_write(table)
    await _after_write(fault)
    location = f"{str(request.base_url).rstrip('/')}/api/now/table/{table}/{record['sys_id']}"
    return JSONResponse({"result": _render(request, schema, record)}, status_code=201, headers={"Location": location})


@router.api_route("/api/now/table/{table}/{sys_id}", methods=["PUT", "PATCH"])
async def update_record(request: Request, table: str, sys_id: str) -> Response:
    # PUT and PATCH both update only the fields given, as on the instance.
    user, fault = await _gate(request, table)
    schema = _table(table)
    body = await _body(request)
    state = _state(request)
    try:
        result = state.instance.update(table, sys_id, body, user)
    except RuleViolation as exc:
        raise ApiError(403, "Operation Failed", exc.detail) from None
    if result is None:
        raise _not_found()
    if result.changed:
        state.stats.count_write(table)
    await _after_write(fault)
    return JSONResponse({"result": _render(request, schema, result.record)})


@router.delete("/api/now/table/{table}/{sys_id}")
async def delete_record(request: Request, table: str, sys_id: str) -> Response:
    _, fault = await _gate(request, table)
    _table(table)
    state = _state(request)
    if not state.instance.delete(table, sys_id):
        raise _not_found()
    state.stats.count_write(table)
    await _after_write(fault)
    return Response(status_code=204)
