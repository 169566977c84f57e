"""`/sandbox/approvers` and `/sandbox/blackouts`: the control panel's handles on the change process.

- `PUT /sandbox/approvers/{change}` (number or sys_id) `{"assess": [user_name, ...], "authorize": [...]}` names the
  approvers of that change's stages, used when the stage starts (instead of the assignment group / CAB);
  `DELETE /sandbox/approvers` forgets every such list. (A test can also insert sysapproval_approver rows as admin.)
- `POST /sandbox/blackouts` `{"start_in": a, "end_in": b}` (seconds from now; optional `name`, `condition`) adds a
  non-repeating blackout span covering [now+a, now+b] (whole seconds, widened outwards) to a blackout schedule
  (created when missing); `DELETE /sandbox/blackouts` removes every schedule this endpoint created, with its spans.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from sandbox.errors import ApiError
from sandbox.instance import Instance
from sandbox.schedules import format_time
from sandbox.state import SandboxState

router = APIRouter(prefix="/sandbox")

_MADE_HERE = "created by POST /sandbox/blackouts"


def _instance(request: Request) -> Instance:
    state: SandboxState = request.app.state.sandbox
    return state.instance


class StageApprovers(BaseModel):
    assess: list[str] | None = Field(default=None, min_length=1)
    authorize: list[str] | None = Field(default=None, min_length=1)


@router.put("/approvers/{change}")
async def put_approvers(request: Request, change: str, approvers: StageApprovers) -> dict[str, Any]:
    instance = _instance(request)
    record = instance.lookup("change_request", change) or instance.find("change_request", "number", change)
    if record is None:
        raise ApiError(404, "No Record found", f"no change {change}")
    named = approvers.model_dump(exclude_none=True)
    unknown = [n for names in named.values() for n in names if instance.find("sys_user", "user_name", n) is None]
    if unknown:
        raise ApiError(422, "Unknown users", ", ".join(unknown))
    instance.approver_overrides.setdefault(record["sys_id"], {}).update(named)
    return {
        "change": record["sys_id"],
        "number": record["number"],
        "approvers": instance.approver_overrides[record["sys_id"]],
    }


@router.delete("/approvers")
async def clear_approvers(request: Request) -> dict[str, str]:
    _instance(request).approver_overrides.clear()
    return {"status": "ok"}


class BlackoutRequest(BaseModel):
    start_in: float
    end_in: float
    name: str = "Sandbox blackout"
    condition: str = ""  # an encoded query over cmdb_ci; empty: every CI


@router.post("/blackouts")
async def add_blackout(request: Request, blackout: BlackoutRequest) -> dict[str, str]:
    if blackout.end_in <= blackout.start_in:
        raise ApiError(422, "Invalid span", "end_in must be after start_in")
    instance = _instance(request)
    now = datetime.now(UTC)
    start = now + timedelta(seconds=math.floor(blackout.start_in))
    end = now + timedelta(seconds=math.ceil(blackout.end_in) + 1)  # + the second now's fraction drops
    schedule = next(
        (
            r
            for r in instance.store.rows("cmn_schedule")
            if r.get("name") == blackout.name and r.get("description") == _MADE_HERE
        ),
        None,
    )
    if schedule is None:
        body = {"name": blackout.name, "type": "blackout", "time_zone": "UTC", "description": _MADE_HERE}
        schedule = instance.create("cmn_schedule_blackout", {**body, "condition": blackout.condition}, "admin")
    span = {
        "schedule": schedule["sys_id"],
        "name": f"{blackout.name} {format_time(start)}",
        "start_date_time": format_time(start),
        "end_date_time": format_time(end),
        "repeat_type": "",
    }
    created = instance.create("cmn_schedule_span", span, "admin")
    return {
        "schedule": schedule["sys_id"],
        "span": created["sys_id"],
        "start_date_time": created["start_date_time"],
        "end_date_time": created["end_date_time"],
    }


@router.delete("/blackouts")
async def clear_blackouts(request: Request) -> dict[str, Any]:
    instance = _instance(request)
    removed = 0
    for schedule in [r for r in instance.store.rows("cmn_schedule") if r.get("description") == _MADE_HERE]:
        for span in [r for r in instance.store.rows("cmn_schedule_span") if r.get("schedule") == schedule["sys_id"]]:
            instance.delete("cmn_schedule_span", span["sys_id"])
        instance.delete("cmn_schedule", schedule["sys_id"])
        removed += 1
    return {"status": "ok", "schedules_removed": removed}
