"""What every Table and Attachment API call passes before it reaches a table, in the order a real call meets it.

1. the profile's latency and the injected latency/faults (the network and the node),
2. authentication (401),
3. the fault injector's token bucket (a 429 on demand), then the instance's rate limit rules (429, and the
   `X-RateLimit-*` headers on every call a rule matches — markdown/api-reference/rest-api-explorer/
   inbound-REST-API-rate-limiting.md),
4. then the route: table ACLs and row visibility (sandbox/acl.py).

Headers decided here must reach whatever the route answers, success or error: they are parked in the request's
state and added by `ResponseHeaders`, a plain ASGI middleware (no per-request task, unlike BaseHTTPMiddleware).
The same middleware leaves out the headers a fault asks to strip (`FaultConfig.strip_headers`).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.errors import ApiError
from sandbox.faults import Fault
from sandbox.ratelimit import Api
from sandbox.state import SandboxState
from sandbox.store import Record
from sandbox.tables import get_table

_EXTRA = "sandbox_response_headers"
_STRIP = "sandbox_strip_headers"


@dataclass(frozen=True)
class Caller:
    user: str
    roles: frozenset[str]
    fault: Fault | None  # a fault still to play after the write (timeout_after_write)


def sandbox_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def add_response_headers(request: Request, headers: dict[str, str]) -> None:
    extra: dict[str, str] = request.scope.setdefault("state", {}).setdefault(_EXTRA, {})
    extra.update(headers)


async def admit(request: Request, api: Api, table: str) -> Caller:
    """Latency, faults, auth and rate limits; answers the caller or raises the error the instance would answer."""
    state = sandbox_state(request)
    logged = state.stats.count_request(request.method, table, request.url.path)
    await state.profile.pause(state.profile.call_delay())
    faults = state.faults.config
    if faults.strip_headers:
        request.scope.setdefault("state", {})[_STRIP] = [h.lower() for h in faults.strip_headers]
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    fault = state.faults.pick(request.method, table)
    if fault is not None:
        state.stats.count_fault(fault.mode)
        if not fault.after_write:
            await _play(fault)
    user = state.auth.user_for(request.headers.get("authorization"))
    if user is None:
        raise ApiError(401, "User Not Authenticated", "Required to provide Auth information")
    logged["user"] = user
    _spend_bucket(state, user)
    roles = state.access.roles_of(user)
    verdict = state.rate_limiter.check(user, roles, api, request.method, table if api == "table" else None)
    if verdict is not None:
        add_response_headers(request, verdict.headers)
        if not verdict.allowed:
            logged["rate_limited"] = True
            state.stats.count_fault("rate_limit_rule")
            raise ApiError(429, "Rate limit exceeded", verdict.detail)
    return Caller(user, roles, fault)


def _spend_bucket(state: SandboxState, user: str) -> None:
    """The fault injector's token bucket (`FaultConfig.rate_limit`): a 429 on demand, off by default."""
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


async def _play(fault: Fault) -> None:
    """A fault that fires before anything is written: an error now, or a hang then a gateway timeout."""
    if fault.status == 429:
        headers = {"Retry-After": "1", "X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0"}
        headers["X-RateLimit-Reset"] = str(math.ceil(time.time()) + 1)
        raise ApiError(429, "Rate limit exceeded", "Injected rate limit", headers=headers)
    if fault.status:
        raise ApiError(fault.status, "Internal Server Error" if fault.status == 500 else "Service Unavailable", "")
    await asyncio.sleep(fault.hang_seconds)
    raise ApiError(504, "Gateway Timeout", "The transaction did not complete in time")


async def after_write(caller: Caller) -> None:
    """The record is committed, then the answer is late (`timeout_after_write`) or lost (`error_after_write`: a 502
    from the gateway) — the retry-duplicates trap: the caller cannot tell it from a write that never happened."""
    fault = caller.fault
    if fault is None or not fault.after_write:
        return
    if fault.status:
        raise ApiError(fault.status, "Bad Gateway", "The connection to the node was lost before it answered")
    await asyncio.sleep(fault.hang_seconds)


def visible_rows(state: SandboxState, user: str, table: str, rows: list[Record]) -> list[Record]:
    """The rows `user` may read, in order: the table's read ACLs and hiding rules; an attachment also needs its
    record to be readable (c_AttachmentAPI.md: "does not exist or is not accessible to the current user")."""
    instance = state.instance
    seen = state.access.visible(user, table, rows, instance.store.class_of, instance.lookup)
    if table != "sys_attachment":
        return seen
    return [r for r in seen if readable_parent(state, user, r.get("table_name", ""), r.get("table_sys_id", ""))]


def readable_parent(state: SandboxState, user: str, table: str, sys_id: str) -> bool:
    """Whether the record an attachment belongs to is readable (an unknown or deleted record does not hide it)."""
    if get_table(table) is None:
        return True
    parent = state.instance.lookup(table, sys_id)
    return parent is None or bool(visible_rows(state, user, table, [parent]))


def readable(state: SandboxState, user: str, table: str, record: Record | None) -> Record | None:
    """The record if `user` may see it; a hidden record is "not found", as on the instance."""
    return record if record is not None and visible_rows(state, user, table, [record]) else None


def not_found() -> ApiError:
    return ApiError(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")


class ResponseHeaders:
    """Adds the headers a gate parked for this request, and strips the ones a fault removes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parked: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra: dict[str, str] = parked.get(_EXTRA) or {}
                strip: list[str] = parked.get(_STRIP) or []
                if extra or strip:
                    headers = MutableHeaders(scope=message)
                    for name, value in extra.items():
                        if name not in headers:
                            headers[name] = value
                    for name in strip:
                        del headers[name]
            await send(message)

        await self.app(scope, receive, send_with_headers)
