"""`/sandbox/*`: the test harness's control panel. No auth: only the harness on 127.0.0.1 talks to it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from sandbox.faults import FaultConfig
from sandbox.outbound import OutboundMessage
from sandbox.outbound_rules import (
    CHANGE_PATH,
    INCIDENT_TOKEN,
    SHIM_URL,
    WEBHOOK_TOKEN,
    configure,
    install,
    property_value,
    shim_base,
)
from sandbox.seed import load_seed
from sandbox.state import SandboxState

router = APIRouter(prefix="/sandbox")


class RuntimeConfig(BaseModel):
    """What can change while running; fields left out of a PUT keep their value.

    The rule target lives in the instance's `x_changeloop.*` system properties (what an admin sets after importing
    the update set): `shim_url` is x_changeloop.shim_url, `webhook_url` the same plus /api/servicenow/change (kept
    for callers from before the properties), the tokens are the two token properties. Setting a URL installs the
    rules' records again (as committing the update set would).
    """

    webhook_url: str | None = None
    shim_url: str | None = None
    webhook_token: str | None = None
    incident_token: str | None = None
    token_lifetime: float | None = None
    close_fields_data_policy: bool | None = None
    approval_wait_for: Literal["all", "first"] | None = None
    change_api: bool | None = None


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/faults")
async def get_faults(request: Request) -> FaultConfig:
    return _state(request).faults.config


@router.put("/faults")
async def put_faults(request: Request, config: FaultConfig) -> FaultConfig:
    _state(request).faults.configure(config)
    return _state(request).faults.config


@router.post("/reset-faults")
async def reset_faults(request: Request) -> FaultConfig:
    _state(request).faults.configure(FaultConfig())
    _state(request).restore_policies()  # ACL rules, roles, profile, rate limits, properties: as configured at start
    return _state(request).faults.config


@router.get("/config")
async def get_config(request: Request) -> RuntimeConfig:
    state = _state(request)
    instance = state.instance
    shim_url = property_value(instance, SHIM_URL)
    return RuntimeConfig(
        webhook_url=f"{shim_url}{CHANGE_PATH}" if shim_url else None,
        shim_url=shim_url or None,
        webhook_token=property_value(instance, WEBHOOK_TOKEN) or None,
        incident_token=property_value(instance, INCIDENT_TOKEN) or None,
        token_lifetime=state.auth.token_lifetime,
        **instance.settings.model_dump(),
    )


@router.put("/config")
async def put_config(request: Request, update: RuntimeConfig) -> RuntimeConfig:
    state = _state(request)
    instance = state.instance
    given = update.model_dump(exclude_unset=True)
    if given.keys() & {"webhook_url", "shim_url", "webhook_token", "incident_token"}:
        shim_url = property_value(instance, SHIM_URL)
        if "webhook_url" in given:
            shim_url = shim_base(update.webhook_url or "")
        if "shim_url" in given:
            shim_url = (update.shim_url or "").rstrip("/")
        tokens = {
            key: (given[key] or "") if key in given else property_value(instance, name)
            for key, name in (("webhook_token", WEBHOOK_TOKEN), ("incident_token", INCIDENT_TOKEN))
        }
        configure(instance, shim_url, tokens["webhook_token"], tokens["incident_token"])
    if update.token_lifetime is not None:
        state.auth.token_lifetime = update.token_lifetime
    settings = {
        k: given[k] for k in ("close_fields_data_policy", "approval_wait_for", "change_api") if given.get(k) is not None
    }
    if settings:
        instance.settings = instance.settings.model_copy(update=settings)
    return await get_config(request)


@router.post("/expire-tokens")
async def expire_tokens(request: Request) -> dict[str, str]:
    _state(request).auth.expire_all_tokens()
    return {"status": "ok"}


@router.get("/stats")
async def get_stats(request: Request) -> dict[str, Any]:
    return _state(request).stats.snapshot()


@router.get("/stats/requests")
async def get_request_log(request: Request, since: int = 0) -> list[dict[str, Any]]:
    """Every Table/Attachment API request since the last reset, in arrival order (seq > `since`): method, table,
    path, user, arrival time (UNIX seconds) and whether a rate limit rule refused it."""
    return _state(request).stats.request_log(since)


@router.post("/stats/reset")
async def reset_stats(request: Request) -> dict[str, Any]:
    _state(request).stats.reset()
    return _state(request).stats.snapshot()


@router.get("/outbound")
async def get_outbound(request: Request) -> list[OutboundMessage]:
    return _state(request).instance.emitter.messages


@router.delete("/outbound")
async def clear_outbound(request: Request) -> dict[str, str]:
    _state(request).instance.emitter.clear()
    return {"status": "ok"}


@router.post("/reset")
async def reset_data(request: Request) -> dict[str, Any]:
    """Wipe every record and load the seed again: a clean demo instance without a restart."""
    state = _state(request)
    state.instance.store.clear()
    state.instance.approver_overrides.clear()
    counts = load_seed(state.instance, state.config.seed_file)
    if state.instance.rule_target and state.instance.rule_target[0]:
        install(state.instance, *state.instance.rule_target)  # the admin's installation survives a data reset
    return {"status": "ok", "records": counts}
