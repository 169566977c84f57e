"""The gate in front of `/api/*`: the bearer token, then the body limit.

The gate is plain ASGI, not a FastAPI dependency, so it runs before the body is parsed: a caller without the
token learns nothing about our schemas, and a 50 MB body is refused after at most 1 MiB + one chunk is read.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from starter.shim.errors import envelope

MAX_BODY = 1024 * 1024  # 1 MiB: the shim's contract (README, "Starter shim API")

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
    """Bearer token (constant-time compare) and the body limit for `/api/*`, in that order; then the request goes
    on with its body buffered, so the route reads it as if nothing happened."""

    def __init__(self, app: ASGIApp, token: str, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.token = token.encode()
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._check_token(headers.get("authorization"))
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

    def _check_token(self, authorization: str | None) -> JSONResponse | None:
        presented = _bearer(authorization)
        if presented is None:
            return envelope(
                401,
                "User Not Authenticated",
                "Required to provide Auth information: Authorization: Bearer <CHANGELOOP_WEBHOOK_TOKEN>",
                {"WWW-Authenticate": "Bearer"},
            )
        # compare_digest: the time taken must not tell an attacker how many leading bytes were right.
        if not hmac.compare_digest(presented, self.token):
            return envelope(401, "User Not Authenticated", "Invalid bearer token", {"WWW-Authenticate": "Bearer"})
        return None

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
