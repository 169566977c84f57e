"""The starter shim: ServiceNow (or any caller) -> Temporal over HTTP (README "Starter shim API").

It holds no state of its own: each concept is a router (servicenow, flows, executions, incidents, ops) over the
settings, the Temporal client and the registry that `create_app` puts on `app.state`. Every refusal
(401/400/413/422/404) happens before any Temporal call that could start something.
"""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from config.registry import Registry
from config.settings import Settings
from ops import scrub
from starter.shim import audit, executions, flows, incidents, ops, servicenow
from starter.shim.errors import install_error_handlers
from starter.shim.guard import ApiGuard
from starter.shim.ops import RequestMetrics, guard_codec


def create_app(settings: Settings, client: Client, registry: Registry) -> FastAPI:
    scrub.install(settings)  # every secret known to the log scrubber; a secret under 8 characters stops the shim
    if settings.webhook_token is None or not settings.webhook_token.get_secret_value():
        raise ValueError("the shim needs CHANGELOOP_WEBHOOK_TOKEN: every /api/* call is checked against it")
    app = FastAPI(
        title="changeloop starter shim",
        version="1",
        description="ServiceNow → Temporal: approved changes and flow runs start durable executions.",
        # A Business Rule whose REST message lacks a Content-Type header still sends JSON: read it as such.
        strict_content_type=False,
    )
    app.state.settings, app.state.temporal, app.state.registry = settings, client, registry
    install_error_handlers(app)
    for router in (servicenow.router, flows.router, executions.router, audit.router, incidents.router, ops.router):
        app.include_router(router)
    guard_codec(app, settings)  # /codec/* tokens and CORS (starter/shim/ops.py)
    # Added last = outermost: the access log and the request counters see every answer, the guard's refusals too.
    app.add_middleware(ApiGuard, token=settings.webhook_token.get_secret_value())
    app.add_middleware(RequestMetrics)
    return app
