"""The runbook registry's schema: what an operator writes in the registry file (steps, timeouts, approvers).

Pure pydantic, read by the worker and the shim. Durations are written the way people write them ('90s', '30m',
'1h', '2d').
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """'90s', '30m', '1h', '2d', '250ms' as well as what pydantic takes (seconds, ISO 8601)."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


# -- runbooks ------------------------------------------------------------------------------------------------------
class HttpCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    json_body: dict[str, object] | None = Field(default=None, alias="json")
    headers: dict[str, str] = {}
    expect_status: list[int] = [200, 201, 202, 204]


class Step(BaseModel):
    """One runbook step: an argv command (never a shell string) or an HTTP call. `{name}` placeholders are filled
    from the run's variables (host, change, params), each value checked against a safe pattern first."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    command: list[str] | None = None
    http: HttpCall | None = None
    timeout: Duration = timedelta(minutes=5)
    # How soon a lost worker is noticed while this step runs (the step heartbeats every 2 s).
    heartbeat_timeout: Duration = timedelta(seconds=30)
    retries: int = Field(default=2, ge=0, le=20)

    @field_validator("command")
    @classmethod
    def _argv_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("command must be a non-empty argv list")
        return value

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.command is None) == (self.http is None):
            raise ValueError(f"step {self.name!r} needs exactly one of 'command' or 'http'")
        return self


class Runbook(BaseModel):
    """A registry entry, resolved: what a change or a flow run executes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    workflow: str = "steps"  # "steps" = RunbookWorkflow over `steps`; otherwise a registered workflow type
    destructive: bool = False
    production: bool = True
    timeout: Duration = timedelta(hours=1)
    approval_timeout: Duration = timedelta(hours=24)
    approvers: list[str] = []  # empty = anyone may approve
    params: dict[str, str] = {}
    inputs: list[str] = []  # required named inputs for /api/flows/{flow}/run
    optional_inputs: list[str] = []
    steps: list[Step] = []
    note_batch_size: int = Field(default=5, ge=1)
    note_batch_seconds: float = Field(default=10.0, ge=0)


# -- a patch wave's params (the registry holds them as strings; typed here) -----------------------------------------


def _comma_list(value: Any) -> Any:
    """Registry params are strings: "a, b" is a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], BeforeValidator(_comma_list)]


class WaveParams(BaseModel):
    """A wave's knobs, read from the runbook's `params` (all strings in the registry, typed here)."""

    model_config = ConfigDict(extra="ignore")  # params also carries {host}, {change} and other runbooks' keys

    application: str = ""  # empty: the change's CI
    target_level: str = "latest"
    max_parallel: int = Field(default=10, ge=1, le=1000)
    canary: int = Field(default=0, ge=0)
    failure_budget_percent: float = Field(default=100.0, ge=0, le=100)
    relationship_types: CommaList = ["Runs on::Runs"]
    ci_classes: CommaList = ["cmdb_ci_linux_server"]
    # CIs loaded, and children started, per run before continue-as-new: bounds each run's history.
    page_size: int = Field(default=500, ge=1, le=2000)
    op_timeout: Duration = timedelta(minutes=30)
    heartbeat_timeout: Duration = timedelta(seconds=30)
    op_retries: int = Field(default=3, ge=0, le=20)
