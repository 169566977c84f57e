"""The starter shim: ServiceNow (or any caller) -> Temporal over HTTP (README "Starter shim API").

It holds no state of its own: each concept is a router (servicenow, flows, executions, incidents, ops) over the
settings, the Temporal client, the registry and the principals that `create_app` puts on `app.state`. Every refusal
(401/403/400/413/422/404) happens before any Temporal call that could start something.
"""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from config.principals import APPROVAL_DECIDE, Principal, PrincipalError, load_principals, weakness
from config.registry import Registry
from config.settings import Settings
from ops import scrub
from starter.shim import audit, executions, flows, incidents, ops, servicenow
from starter.shim.errors import install_error_handlers
from starter.shim.guard import ApiGuard
from starter.shim.ops import RequestMetrics, guard_codec


def shim_principals(settings: Settings) -> list[Principal]:
    """The shim's callers, checked: a weak or placeholder token, or approvals without a decision key, stop the
    shim at start (PrincipalError, a message for the operator) rather than serve with a false sense of safety."""
    principals = load_principals(settings.principals, settings.principals_file, settings.webhook_token)
    deciders = sorted(p.name for p in principals if APPROVAL_DECIDE in p.scopes)
    if deciders:
        key = settings.decision_key.get_secret_value() if settings.decision_key else ""
        if not key:
            raise PrincipalError(
                f"principal(s) {', '.join(deciders)} may decide approvals, but CHANGELOOP_DECISION_KEY is not set: "
                "the shim signs each decision with it and the worker checks it (the same key on both)"
            )
        if problem := weakness(key):
            raise PrincipalError(f"CHANGELOOP_DECISION_KEY {problem}")
    return principals


def create_app(settings: Settings, client: Client, registry: Registry) -> FastAPI:
    scrub.install(settings)  # every secret known to the log scrubber; a secret under 8 characters stops the shim
    principals = shim_principals(settings)
    docs = settings.shim_docs
    app = FastAPI(
        title="changeloop starter shim",
        version="1",
        description="ServiceNow → Temporal: approved changes and flow runs start durable executions.",
        # A Business Rule whose REST message lacks a Content-Type header still sends JSON: read it as such.
        strict_content_type=False,
        # The API docs need a valid token (the guard), or are not served at all.
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings, app.state.temporal, app.state.registry = settings, client, registry
    install_error_handlers(app)
    for router in (servicenow.router, flows.router, executions.router, audit.router, incidents.router, ops.router):
        app.include_router(router)
    guard_codec(app, settings)  # /codec/* tokens and CORS (starter/shim/ops.py)
    # Added last = outermost: the access log and the request counters see every answer, the guard's refusals too.
    app.add_middleware(ApiGuard, principals=principals, docs=docs)
    app.add_middleware(RequestMetrics)
    return app
