"""The shim's operations surface: `/readyz`, `/metrics` (requests by route and status) and the remote codec
endpoint `/codec/encode` + `/codec/decode` that lets the Temporal UI and CLI show encrypted history to authorised
users.

The codec endpoint follows Temporal's remote codec protocol: `POST` a JSON `{"payloads":[{"metadata":{..},"data":..}]}`
(proto3 JSON, bytes in base64), answer the same shape. It is on only when history encryption is on and a way in
is configured: a static token from CHANGELOOP_CODEC_TOKENS (the CLI's `--codec-auth "Bearer <token>"`), the UI
user's OIDC access token (TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true; CHANGELOOP_CODEC_OIDC_*), or - dev only - the
login-less dev UI on this machine (CHANGELOOP_CODEC_DEV_LOOPBACK). Browsers may call it only from
CHANGELOOP_CODEC_CORS_ORIGINS (default: the origin of CHANGELOOP_UI_URL, both loopback spellings when local).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import Counter
from contextlib import suppress
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
from ops.oidc import KeysUnavailable, OidcVerifier, TokenRefused, parse_required_claim
from starter.shim.deps import RegistryDep, SettingsDep, TemporalDep
from starter.shim.errors import envelope, log
from starter.shim.guard import ASGIApp, Message, Receive, Scope, Send
from starter.shim.models import Health, answer

CODEC_PREFIX = "/codec/"
# Label values of /metrics come from these sets only: a caller inventing methods or paths cannot grow the series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
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
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            self.requests[(method, route, str(status))] += 1
            key = (method, route)
            elapsed = time.perf_counter() - started
            self.seconds[key] = self.seconds.get(key, 0.0) + elapsed
            log.info(
                "shim.request",
                method=method,
                path=scope["path"][:200],
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
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Headers a reverse proxy adds: a proxied call is not the dev UI on this machine, whatever its source address.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host in LOOPBACK_HOSTS:
        return True
    with suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    return False


def _loopback_origin(origin: str) -> bool:
    return _loopback_host(urlsplit(origin).hostname)


def codec_origins(settings: Settings) -> list[str]:
    """CHANGELOOP_CODEC_CORS_ORIGINS, else the UI's origin; a UI on loopback is reachable as both 127.0.0.1 and
    localhost (the dev server's banner prints localhost, our links say 127.0.0.1): both are allowed."""
    if settings.codec_cors_origins:
        return [o for o in settings.codec_cors_origins if o]
    origin = _origin(settings.ui_url)
    parts = urlsplit(origin)
    if not origin or not _loopback_origin(origin):
        return [origin] if origin else []
    port = f":{parts.port}" if parts.port else ""
    return [origin, *(f"{parts.scheme}://{h}{port}" for h in ("127.0.0.1", "localhost") if h != parts.hostname)]


class CodecGuard:
    """For /codec/*: CORS (preflight answered without auth, as browsers send it), then who is calling - a static
    token (the CLI's `--codec-auth`), the UI user's OIDC access token (ops/oidc.py), or, in dev only, the dev UI
    on this machine - then namespace and size."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: list[str],
        origins: list[str],
        namespace: str,
        oidc: OidcVerifier | None = None,
        dev_loopback: bool = False,
    ) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]
        self.origins = set(origins)
        self.namespace = namespace
        self.oidc = oidc
        self.dev_loopback = dev_loopback

    @property
    def enabled(self) -> bool:
        return bool(self.tokens) or self.oidc is not None or self.dev_loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(CODEC_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cors = self._cors(headers.get("origin"))
        if scope["method"] == "OPTIONS":
            await PlainTextResponse("", status_code=204 if cors else 403, headers=cors)(scope, receive, send)
            return
        refusal = self._off() or await self._caller_refusal(scope, headers) or self._limits(headers)
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

    def _off(self) -> JSONResponse | None:
        if self.enabled:
            return None
        return envelope(
            404,
            "No Record found",
            "the codec endpoint is off: set CHANGELOOP_CODEC_TOKENS and/or CHANGELOOP_CODEC_OIDC_ISSUER",
        )

    def _limits(self, headers: Headers) -> JSONResponse | None:
        namespace = headers.get("x-namespace")
        if namespace and namespace != self.namespace:
            return envelope(403, "Forbidden", f"this codec serves namespace {self.namespace!r}, not {namespace!r}")
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > CODEC_MAX_BODY:
            return envelope(413, "Request Entity Too Large", f"codec bodies are limited to {CODEC_MAX_BODY} bytes")
        return None

    async def _caller_refusal(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        authorization = headers.get("authorization")
        if not authorization and self.dev_loopback and self._dev_ui_on_this_machine(scope, headers):
            return None
        scheme, _, presented = (authorization or "").partition(" ")
        token = presented.strip()
        if scheme.lower() == "bearer" and token:
            if any(hmac.compare_digest(token.encode(), t) for t in self.tokens):
                return None
            if self.oidc is not None:
                try:
                    claims = await self.oidc.verify(token)
                except KeysUnavailable as exc:
                    log.warning("codec.oidc_keys_unavailable", detail=str(exc))
                    return envelope(
                        503, "Service Unavailable", "cannot verify access tokens now: issuer keys unreachable"
                    )
                except TokenRefused as exc:
                    log.info("codec.token_refused", reason=str(exc))
                    return _unauthenticated(f"access token refused: {exc}")
                log.info("codec.caller", subject=claims.get("sub", "?"))
                return None
        return _unauthenticated("codec needs Authorization: Bearer <token or OIDC access token>")

    def _dev_ui_on_this_machine(self, scope: Scope, headers: Headers) -> bool:
        """The dev UI has no login, so it sends no token. Accepted without one only when everything about the
        call says "a browser on this machine showing the dev UI": the peer is loopback, the Host it asked for is
        loopback (a DNS-rebinding page would name its own host), no proxy forwarded it, and the Origin is one of
        the allowed origins, which `guard_codec` has checked are all loopback."""
        client_host = (scope.get("client") or ("",))[0]
        origin = headers.get("origin") or ""
        return (
            _loopback_host(client_host)
            and _loopback_host(urlsplit(f"//{headers.get('host', '')}").hostname)
            and not any(h in headers for h in PROXY_HEADERS)
            and origin in self.origins
        )


def _unauthenticated(detail: str) -> JSONResponse:
    return envelope(401, "User Not Authenticated", detail, {"WWW-Authenticate": "Bearer"})


def _payloads(body: bytes) -> Payloads:
    try:
        return json_format.Parse(body or b"{}", Payloads(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from exc


router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz(client: TemporalDep) -> JSONResponse:
    """200 `{"status":"ok"}` when Temporal answers a health check, 503 `{"status":"unavailable"}` otherwise. No auth
    (load balancers call it), so it says nothing else: no address, no exception text (those go to the log)."""
    try:
        healthy = await client.service_client.check_health(timeout=timedelta(seconds=2))
    except Exception as exc:  # any failure to reach the server is "unavailable", the probe must not 500
        log.warning("shim.unhealthy", error=str(exc))
        healthy = False
    return answer(Health(status="ok" if healthy else "unavailable"), 200 if healthy else 503)


@router.get("/readyz")
async def readyz(settings: SettingsDep, client: TemporalDep, registry: RegistryDep) -> JSONResponse:
    """200 when Temporal answers and the runbook registry is loaded; 503 naming what is missing. No auth."""
    problems = []
    try:
        if not await client.service_client.check_health(timeout=timedelta(seconds=2)):
            problems.append("Temporal not serving")
    except Exception as exc:  # unreachable is "not ready", never a 500; the reason goes to the log, not the caller
        log.warning("shim.not_ready", error=str(exc))
        problems.append("Temporal unreachable")
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
    """Who may call /codec/* and from which browser origins; `RequestMetrics` is added by create_app last, so it
    stays outermost. A setting that would open the codec wider than documented stops the shim here."""
    app.state.codec = codec_from_settings(settings)
    tokens = settings.codec_tokens.get_secret_value().split(",") if settings.codec_tokens else []
    origins = codec_origins(settings)
    oidc = None
    if settings.codec_oidc_issuer:
        oidc = OidcVerifier(
            settings.codec_oidc_issuer,
            settings.codec_oidc_audience or "",
            jwks_url=settings.codec_oidc_jwks_url,
            required_claim=parse_required_claim(settings.codec_oidc_required_claim),
        )
    if settings.codec_dev_loopback:
        remote = [o for o in origins if not _loopback_origin(o)]
        if remote or not origins:
            raise ValueError(
                "CHANGELOOP_CODEC_DEV_LOOPBACK lets the dev UI decode without a token and is for loopback only; "
                f"the codec's browser origins must all be loopback, not {', '.join(remote) or '(none)'}"
            )
        log.warning("codec.dev_loopback", detail="/codec/* accepts calls without a token from the loopback dev UI")
    app.add_middleware(
        CodecGuard,
        tokens=[t.strip() for t in tokens if t.strip()],
        origins=origins,
        namespace=settings.temporal_namespace,
        oidc=oidc,
        dev_loopback=settings.codec_dev_loopback,
    )
