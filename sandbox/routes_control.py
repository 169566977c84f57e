"""`/sandbox/*`: the test harness's control panel. No auth: only the harness on 127.0.0.1 talks to it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from sandbox.faults import FaultConfig
from sandbox.outbound import OutboundMessage
from sandbox.seed import load_seed
from sandbox.state import SandboxState

router = APIRouter(prefix="/sandbox")


class RuntimeConfig(BaseModel):
    """What can change while running; fields left out of a PUT keep their value."""

    webhook_url: str | None = None
    webhook_token: str | None = None
    token_lifetime: float | None = None


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
    emitter = state.instance.emitter
    return RuntimeConfig(webhook_url=emitter.url, webhook_token=emitter.token, token_lifetime=state.auth.token_lifetime)


@router.put("/config")
async def put_config(request: Request, update: RuntimeConfig) -> RuntimeConfig:
    state = _state(request)
    given = update.model_dump(exclude_unset=True)
    if "webhook_url" in given:
        state.instance.emitter.url = update.webhook_url
    if "webhook_token" in given:
        state.instance.emitter.token = update.webhook_token
    if update.token_lifetime is not None:
        state.auth.token_lifetime = update.token_lifetime
    return await get_config(request)


@router.post("/expire-tokens")
async def expire_tokens(request: Request) -> dict[str, str]:
    _state(request).auth.expire_all_tokens()
    return {"status": "ok"}


@router.get("/stats")
async def get_stats(request: Request) -> dict[str, Any]:
    return _state(request).stats.snapshot()


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
    counts = load_seed(state.instance, state.config.seed_file)
    return {"status": "ok", "records": counts}
