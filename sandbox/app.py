"""`create_app(config)`: one emulated ServiceNow instance as a FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.exceptions import HTTPException

from sandbox.auth import Authenticator
from sandbox.config import SandboxConfig
from sandbox.errors import ApiError, api_error_handler, http_error_handler
from sandbox.faults import FaultInjector
from sandbox.fleet import router as fleet_router
from sandbox.gate import ResponseHeaders
from sandbox.instance import Instance
from sandbox.outbound import WebhookEmitter
from sandbox.outbound_rules import configure, shim_base
from sandbox.process_settings import ProcessSettings
from sandbox.routes_attachment import router as attachment_router
from sandbox.routes_change_api import router as change_api_router
from sandbox.routes_control import router as control_router
from sandbox.routes_control_change import router as control_change_router
from sandbox.routes_oauth import router as oauth_router
from sandbox.routes_policies import router as policies_router
from sandbox.routes_table import router as table_router
from sandbox.seed import load_seed
from sandbox.slack import router as slack_router
from sandbox.state import SandboxState
from sandbox.store import Store


def build_state(config: SandboxConfig) -> SandboxState:
    store = Store(config.db_path)
    settings = ProcessSettings(
        close_fields_data_policy=config.close_fields_data_policy,
        approval_wait_for=config.approval_wait_for,
        change_api=config.change_api,
    )
    instance = Instance(store, WebhookEmitter(), settings)
    if config.seed and store.is_empty():
        load_seed(instance, config.seed_file)
    if config.webhook_url:
        configure(instance, shim_base(config.webhook_url), config.webhook_token or "", config.incident_token or "")
    return SandboxState(
        config=config,
        instance=instance,
        auth=Authenticator(config.users, config.clients, config.token_lifetime),
        faults=FaultInjector(config.faults),
    )


def create_app(config: SandboxConfig | None = None) -> FastAPI:
    config = config or SandboxConfig()
    app = FastAPI(title="changeloop sandbox ServiceNow", docs_url="/sandbox/docs", openapi_url="/sandbox/openapi.json")
    app.state.sandbox = build_state(config)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_middleware(ResponseHeaders)  # X-RateLimit-* on every rate-limited call, success or error
    app.include_router(table_router)
    app.include_router(attachment_router)  # /api/now/attachment
    app.include_router(policies_router)  # /sandbox/acl, /roles, /profile, /rate-limits, /properties
    # The Change Management API, with and without its version segment (/api/sn_chg_rest/v1/change/...).
    app.include_router(change_api_router, prefix="/api/sn_chg_rest")
    app.include_router(change_api_router, prefix="/api/sn_chg_rest/{api_version}")
    app.include_router(oauth_router)
    app.include_router(control_router)
    app.include_router(control_change_router)  # /sandbox/approvers, /sandbox/blackouts
    app.include_router(fleet_router)  # the simulated hosts: /fleet/*, no auth, outside /api/now
    app.include_router(slack_router)  # /sandbox/slack: captures Slack webhook posts
    return app
