"""`/sandbox/*` control panel for access and performance: ACL row hiding, roles, profile, rate limits, properties.

No auth, like the rest of the panel. `POST /sandbox/reset-faults` puts all of these back to the start
configuration as well (SandboxState.restore_policies).

| call | body | answer |
|---|---|---|
| `GET/PUT /sandbox/acl` | `{"rules":[{"table","user"?,"sys_ids"?,"query"?}]}` | the rules |
| `DELETE /sandbox/acl` | — | no rules |
| `GET /sandbox/roles` | — | `{"<user>": ["<role>", ...]}` (direct roles) |
| `PUT /sandbox/roles/{user}` | `{"roles": [...]}` | `{"user","roles"}` |
| `PUT /sandbox/roles/{user}/{role}`, `DELETE ...` | — | grant / remove one role: `{"user","roles"}` |
| `GET/PUT /sandbox/profile` | `{"name":"default"|"realistic", "latency_ms"?, "jitter_ms"?, "per_row_ms"?, "seed"?, "rate_limits"?}` | the profile in force |
| `GET/PUT /sandbox/rate-limits` | `{"window_seconds", "rules":[RateLimitRule]}` | rules, window and this window's counts |
| `POST /sandbox/rate-limits/reset` | — | counts back to zero ("Reset Rate Limit Counts") |
| `GET/PUT /sandbox/properties` | `{"com.glide.attachment.max_size": "1024"}` | the properties |
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from sandbox.acl import AclConfig, RoleList
from sandbox.attachments import SystemProperties
from sandbox.gate import sandbox_state
from sandbox.profile import ProfileChoice, ProfileSettings
from sandbox.ratelimit import RateLimitConfig

router = APIRouter(prefix="/sandbox")


@router.get("/acl")
async def get_acl(request: Request) -> AclConfig:
    return sandbox_state(request).access.config


@router.put("/acl")
async def put_acl(request: Request, config: AclConfig) -> AclConfig:
    return sandbox_state(request).access.configure(config)


@router.delete("/acl")
async def clear_acl(request: Request) -> AclConfig:
    return sandbox_state(request).access.configure(AclConfig())


@router.get("/roles")
async def get_roles(request: Request) -> dict[str, list[str]]:
    return sandbox_state(request).access.roles()


@router.put("/roles/{user}")
async def put_roles(request: Request, user: str, body: RoleList) -> dict[str, Any]:
    return {"user": user, "roles": sandbox_state(request).access.set_roles(user, body.roles)}


@router.put("/roles/{user}/{role}")
async def grant_role(request: Request, user: str, role: str) -> dict[str, Any]:
    return {"user": user, "roles": sandbox_state(request).access.grant(user, role)}


@router.delete("/roles/{user}/{role}")
async def revoke_role(request: Request, user: str, role: str) -> dict[str, Any]:
    return {"user": user, "roles": sandbox_state(request).access.revoke(user, role)}


@router.get("/profile")
async def get_profile(request: Request) -> ProfileSettings:
    settings = sandbox_state(request).profile.settings
    settings.rate_limits = sandbox_state(request).rate_limiter.config
    return settings


@router.put("/profile")
async def put_profile(request: Request, choice: ProfileChoice) -> ProfileSettings:
    state = sandbox_state(request)
    settings = choice.resolve()
    state.profile.configure(settings)
    state.rate_limiter.configure(settings.rate_limits)
    return await get_profile(request)


def _rate_limits(request: Request) -> dict[str, Any]:
    limiter = sandbox_state(request).rate_limiter
    return {**limiter.config.model_dump(), "counts": limiter.counts()}


@router.get("/rate-limits")
async def get_rate_limits(request: Request) -> dict[str, Any]:
    return _rate_limits(request)


@router.put("/rate-limits")
async def put_rate_limits(request: Request, config: RateLimitConfig) -> dict[str, Any]:
    sandbox_state(request).rate_limiter.configure(config)
    return _rate_limits(request)


@router.post("/rate-limits/reset")
async def reset_rate_limit_counts(request: Request) -> dict[str, Any]:
    sandbox_state(request).rate_limiter.reset_counts()
    return _rate_limits(request)


@router.get("/properties")
async def get_properties(request: Request) -> dict[str, str]:
    return sandbox_state(request).properties.shown()


@router.put("/properties")
async def put_properties(request: Request, update: dict[str, str | float]) -> dict[str, str]:
    state = sandbox_state(request)
    merged = {**state.properties.model_dump(by_alias=True), **update}
    try:
        state.properties = SystemProperties.model_validate(merged)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return state.properties.shown()
