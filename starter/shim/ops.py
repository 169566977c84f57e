"""The shim's operations surface: `/readyz`, `/metrics` (requests by route and status) and the remote codec
endpoint `/codec/encode` + `/codec/decode` that lets the Temporal UI and CLI show encrypted history to authorised
users.

The codec endpoint follows Temporal's remote codec protocol: `POST` a JSON `{"payloads":[{"metadata":{..},"data":..}]}`
(proto3 JSON, bytes in base64), answer the same shape. It is on only when history encryption is on and
CHANGELOOP_CODEC_TOKENS names at least one token; every call needs `Authorization: Bearer <token>` (the CLI's
`--codec-auth`, the UI's "pass access token" through an authenticating proxy), and browsers may call it only from
CHANGELOOP_CODEC_CORS_ORIGINS (default: the origin of CHANGELOOP_UI_URL).
"""

from __future__ import annotations

import hmac
import time
from collections import Counter
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from google.protobuf import json_format
from starlette.datastructures import Headers
from temporalio.api.common.v1 import Payloads

from config.settings import Settings
from ops.codec import EncryptionCodec, codec_from_settings
from starter.shim.deps import RegistryDep, SettingsDep, TemporalDep
from starter.shim.errors import envelope, log
from starter.shim.guard import ASGIApp, Message, Receive, Scope, Send
from starter.shim.models import Health, answer

CODEC_PREFIX = "/codec/"
CODEC_MAX_BODY = 16 * 1024 * 1024  # a page of history payloads, each up to 2 MB


# -- /metrics --------------------------------------------------------------------------------------------------------
class RequestMetrics:
    """Counts every answer by method, route template and status (`/api/executions/{executionId}/status`, not the
    raw path: one time series per route, whatever the IDs), and writes the access log line. Outermost, so refusals
    are counted and logged too. Headers are never logged, so the bearer token cannot leak through here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.seconds: dict[tuple[str, str], float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["request_metrics"] = self
        started = time.perf_counter()
        status = 500

        async def note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, note)
        finally:
            route = getattr(scope.get("route"), "path", None) or _unrouted(scope["path"])
            self.requests[(scope["method"], route, str(status))] += 1
            key = (scope["method"], route)
            elapsed = time.perf_counter() - started
            self.seconds[key] = self.seconds.get(key, 0.0) + elapsed
            log.info(
                "shim.request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round(elapsed * 1000, 1),
                client=(scope.get("client") or ("?",))[0],
            )

    def render(self) -> str:
        lines = [
            "# HELP changeloop_shim_requests Requests answered by the shim, by method, route and status.",
            "# TYPE changeloop_shim_requests counter",
        ]
        for (method, route, status), count in sorted(self.requests.items()):
            lines.append(f'changeloop_shim_requests{{method="{method}",route="{route}",status="{status}"}} {count}')
        lines += [
            "# HELP changeloop_shim_request_seconds Seconds spent answering, by method and route.",
            "# TYPE changeloop_shim_request_seconds counter",
        ]
        for (method, route), seconds in sorted(self.seconds.items()):
            lines.append(f'changeloop_shim_request_seconds{{method="{method}",route="{route}"}} {seconds:.6f}')
        return "\n".join(lines) + "\n"


def _unrouted(path: str) -> str:
    # Refused before routing (401/413 of the guard) or no such route: never the raw path, IDs would explode it.
    return "/api/*" if path.startswith("/api/") else "unmatched"


# -- /codec ----------------------------------------------------------------------------------------------------------
def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


class CodecGuard:
    """For /codec/*: CORS (preflight answered without auth, as browsers send it), bearer token, namespace, size."""

    def __init__(self, app: ASGIApp, tokens: list[str], origins: list[str], namespace: str) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]
        self.origins = set(origins)
        self.namespace = namespace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(CODEC_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cors = self._cors(headers.get("origin"))
        if scope["method"] == "OPTIONS":
            await PlainTextResponse("", status_code=204 if cors else 403, headers=cors)(scope, receive, send)
            return
        refusal = self._refusal(headers)
        if refusal is not None:
            refusal.headers.update(cors)
            await refusal(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and cors:
                message["headers"] = [*message.get("headers", []), *((k.encode(), v.encode()) for k, v in cors.items())]
            await send(message)

        await self.app(scope, receive, with_cors)

    def _cors(self, origin: str | None) -> dict[str, str]:
        if not origin or origin not in self.origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Namespace",
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }

    def _refusal(self, headers: Headers) -> JSONResponse | None:
        if not self.tokens:
            return envelope(404, "No Record found", "the codec endpoint is off: set CHANGELOOP_CODEC_TOKENS")
        scheme, _, presented = (headers.get("authorization") or "").partition(" ")
        token = presented.strip().encode()
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token, t) for t in self.tokens):
            return envelope(
                401,
                "User Not Authenticated",
                "codec needs Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
        namespace = headers.get("x-namespace")
        if namespace and namespace != self.namespace:
            return envelope(403, "Forbidden", f"this codec serves namespace {self.namespace!r}, not {namespace!r}")
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > CODEC_MAX_BODY:
            return envelope(413, "Request Entity Too Large", f"codec bodies are limited to {CODEC_MAX_BODY} bytes")
        return None


def _payloads(body: bytes) -> Payloads:
    try:
        return json_format.Parse(body or b"{}", Payloads(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from exc


router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz(settings: SettingsDep, client: TemporalDep) -> JSONResponse:
    """200 when Temporal answers a health check, 503 otherwise. No auth: load balancers call it."""
    try:
        healthy = await client.service_client.check_health(timeout=timedelta(seconds=2))
    except Exception as exc:  # any failure to reach the server is "unavailable", the probe must not 500
        return answer(Health(status="unavailable", temporal=settings.temporal_address, detail=str(exc)), 503)
    if not healthy:
        return answer(Health(status="unavailable", temporal=settings.temporal_address, detail="not serving"), 503)
    return answer(Health(status="ok", temporal=settings.temporal_address))


@router.get("/readyz")
async def readyz(settings: SettingsDep, client: TemporalDep, registry: RegistryDep) -> JSONResponse:
    """200 when Temporal answers and the runbook registry is loaded; 503 naming what is missing. No auth."""
    problems = []
    try:
        if not await client.service_client.check_health(timeout=timedelta(seconds=2)):
            problems.append("Temporal not serving")
    except Exception as exc:  # unreachable is "not ready", never a 500
        problems.append(f"Temporal unreachable: {exc}")
    if not registry.runbooks:
        problems.append(f"runbook registry {registry.source} has no runbook")
    body = {
        "status": "unavailable" if problems else "ok",
        "temporal": settings.temporal_address,
        "namespace": settings.temporal_namespace,
        "runbooks": len(registry.runbooks),
        "encryption": settings.encryption,
    }
    if problems:
        body["detail"] = "; ".join(problems)
    return JSONResponse(body, status_code=503 if problems else 200)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format: changeloop_shim_requests{method,route,status}. No auth (counts only)."""
    recorder: RequestMetrics | None = request.scope.get("state", {}).get("request_metrics")
    text = recorder.render() if recorder else ""
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


async def _transform(request: Request, decode: bool) -> JSONResponse:
    codec: EncryptionCodec | None = request.app.state.codec
    if codec is None:
        return envelope(404, "No Record found", "the codec endpoint is off: history encryption is not on")
    try:
        payloads = _payloads(await request.body())
        out = await (codec.decode if decode else codec.encode)(list(payloads.payloads))
    except ValueError as exc:
        return envelope(400, "Bad Request", str(exc))
    body: dict[str, Any] = json_format.MessageToDict(Payloads(payloads=out))
    return JSONResponse({"payloads": body.get("payloads", [])})


@router.post("/codec/decode")
async def codec_decode(request: Request) -> JSONResponse:
    """Temporal remote codec: decrypt payloads for the UI / `temporal --codec-endpoint`. Bearer token."""
    return await _transform(request, decode=True)


@router.post("/codec/encode")
async def codec_encode(request: Request) -> JSONResponse:
    """Temporal remote codec: encrypt payloads (the UI encodes signal / query input with it). Bearer token."""
    return await _transform(request, decode=False)


def guard_codec(app: FastAPI, settings: Settings) -> None:
    """The codec's tokens and CORS origins; `RequestMetrics` is added by create_app last, so it stays outermost."""
    app.state.codec = codec_from_settings(settings)
    tokens = settings.codec_tokens.get_secret_value().split(",") if settings.codec_tokens else []
    origins = settings.codec_cors_origins or [_origin(settings.ui_url)]
    app.add_middleware(
        CodecGuard,
        tokens=[t.strip() for t in tokens if t.strip()],
        origins=[o for o in origins if o],
        namespace=settings.temporal_namespace,
    )
