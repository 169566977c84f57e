"""The gate in front of `/api/*` (and the API docs): who is calling, whether their scopes allow this route, then the
body limit.

The gate is plain ASGI, not a FastAPI dependency, so it runs before the body is parsed: a caller without a valid
token learns nothing about our schemas, a caller without the route's scope learns nothing more, and a 50 MB body is
refused after at most 1 MiB + one chunk is read. Tokens are compared by their sha256 in constant time, against every
principal (config/principals.py); the principal found is handed to the route in `request.state.principal`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from config.principals import (
    APPROVAL_DECIDE,
    CHANGE_WEBHOOK,
    EXECUTION_READ,
    FLOW_RUN_PREFIX,
    INCIDENT_RESOLVE,
    Principal,
)
from starter.shim.errors import envelope

MAX_BODY = 1024 * 1024  # 1 MiB: the shim's contract (README, "Starter shim API")
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")

# Which scope each route needs, decided from the method and path alone (before the body is read). A path that
# matches none is answered by the router (404/405) to any authenticated principal.
_ROUTES: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    ("POST", re.compile(r"^/api/servicenow/(change|approval|change/event)$"), lambda m: CHANGE_WEBHOOK),
    ("POST", re.compile(r"^/api/flows/([^/]+)/run$"), lambda m: f"{FLOW_RUN_PREFIX}{m.group(1)}"),
    ("GET", re.compile(r"^/api/executions/[^/]+/(status|audit)$"), lambda m: EXECUTION_READ),
    ("POST", re.compile(r"^/api/executions/[^/]+/(approve|reject)$"), lambda m: APPROVAL_DECIDE),
    ("POST", re.compile(r"^/api/incidents/[^/]+/resolve$"), lambda m: INCIDENT_RESOLVE),
]


def required_scope(method: str, path: str) -> str | None:
    for route_method, pattern, scope in _ROUTES:
        match = pattern.match(path)
        if match and method == route_method:
            return scope(match)
    return None


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _bearer(authorization: str | None) -> bytes | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip().encode()


class ApiGuard:
    """Principal (bearer token, constant-time compare), scope, and the body limit for `/api/*`, in that order; then
    the request goes on with its body buffered, so the route reads it as if nothing happened."""

    def __init__(self, app: ASGIApp, principals: list[Principal], max_body: int = MAX_BODY, docs: bool = True) -> None:
        self.app = app
        self.principals = principals
        self.max_body = max_body
        self.guarded_docs = DOCS_PATHS if docs else ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/api/") or path in self.guarded_docs):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        principal, refusal = self._principal(headers.get("authorization"))
        if refusal is None and principal is not None:
            refusal = self._check_scope(principal, scope["method"], path)
            scope.setdefault("state", {})["principal"] = principal
        if refusal is None:
            refusal = self._check_declared_length(headers.get("content-length"))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        body, refusal = await self._read_body(receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _principal(self, authorization: str | None) -> tuple[Principal | None, JSONResponse | None]:
        presented = _bearer(authorization)
        if presented is None:
            return None, envelope(
                401,
                "User Not Authenticated",
                "Required to provide Auth information: Authorization: Bearer <your principal's token>",
                {"WWW-Authenticate": "Bearer"},
            )
        # Compare digests with compare_digest, against every principal without stopping at a match: the time taken
        # tells an attacker neither how many bytes were right nor which principal matched.
        digest = hashlib.sha256(presented).hexdigest().encode()
        found = None
        for principal in self.principals:
            if hmac.compare_digest(digest, principal.token_sha256.encode()):
                found = principal
        if found is None:
            return None, envelope(401, "User Not Authenticated", "Invalid bearer token", {"WWW-Authenticate": "Bearer"})
        return found, None

    @staticmethod
    def _check_scope(principal: Principal, method: str, path: str) -> JSONResponse | None:
        needed = required_scope(method, path)
        if needed is None or principal.allows(needed):
            return None
        return envelope(
            403, "Forbidden", f"principal {principal.name!r} lacks the scope {needed!r} that {method} {path} needs"
        )

    def _check_declared_length(self, content_length: str | None) -> JSONResponse | None:
        if content_length is None:
            return None
        if not content_length.isdigit():
            return envelope(400, "Bad Request", f"Content-Length is not a number: {content_length[:40]!r}")
        if int(content_length) > self.max_body:
            return self._too_large(int(content_length))
        return None

    async def _read_body(self, receive: Receive) -> tuple[bytes, JSONResponse | None]:
        # Content-Length can lie or be absent (chunked): count what actually arrives and stop at the limit.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return bytes(body), envelope(400, "Bad Request", "client disconnected before sending the body")
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return b"", self._too_large(len(body), at_least=True)
            if not message.get("more_body", False):
                return bytes(body), None

    def _too_large(self, size: int, at_least: bool = False) -> JSONResponse:
        amount = f"at least {size}" if at_least else str(size)
        return envelope(413, "Request Entity Too Large", f"body is {amount} bytes; the limit is {self.max_body} bytes")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # afterwards only disconnects remain

    return replay
