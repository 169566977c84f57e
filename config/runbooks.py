"""The runbook registry's schema: what an operator writes in the registry file (steps, timeouts, approvers).

Pure pydantic, read by the worker and the shim. Durations are written the way people write them ('90s', '30m',
'1h', '2d').

Values substituted into a step are typed (`ValueType`): `{host}` and `{fqdn}` are CMDB CI names or FQDNs, `{change}`
a ticket number, `{ip}` an address, every other placeholder a free value (a word that never starts with `-` unless
the step marks it as a value after `--`, and never holds `..`); a runbook's `types` may type its own placeholders.
In an HTTP step's URL, scheme, host and port come from the template: a value fills a path segment or a query value,
percent-encoded, and only a `host`-typed placeholder may stand for the whole host name (the outbound allowlist,
ops/outbound.py, then decides whether that host may be reached). Credentials are named, never written
(config/secrets.py). A registry entry is identified by its digest (`runbook_digest`): workflows carry the name and
the digest, and the worker looks the steps up in its own registry.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from config.secrets import SecretRef, Value, literal_credentials

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """'90s', '30m', '1h', '2d', '250ms' as well as what pydantic takes (seconds, ISO 8601)."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


# -- typed values --------------------------------------------------------------------------------------------------
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ValueType(StrEnum):
    HOST = "host"  # a CMDB CI name or FQDN: letters, digits, '.', '_', '-'; no leading '-', no '..'
    CHANGE = "change"  # a ticket number: CHG0030001
    IP = "ip"  # an IPv4 or IPv6 address
    NUMBER = "number"  # ASCII digits
    WORD = "word"  # a free value: letters, digits and . _ : @ / + = , - ; no leading '-', no '..'


# Placeholders typed by their name, in steps and host drivers alike; a runbook's `types` adds its own.
BUILTIN_TYPES: dict[str, ValueType] = {
    "host": ValueType.HOST,
    "fqdn": ValueType.HOST,
    "change": ValueType.CHANGE,
    "ip": ValueType.IP,
}
# Host patterns that select more than one host in ansible's `-l`/`--limit` (its implicit groups).
INVENTORY_PATTERNS = frozenset({"all", "ungrouped"})
# Names the worker fills itself (never from a ticket or a caller): not checked.
WORKER_BUILT = frozenset({"python"})

_PATTERNS = {
    ValueType.HOST: re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})", re.ASCII),
    ValueType.CHANGE: re.compile(r"[A-Z]{2,10}[0-9]{4,12}", re.ASCII),
    ValueType.NUMBER: re.compile(r"[0-9]{1,18}", re.ASCII),
    ValueType.WORD: re.compile(r"[A-Za-z0-9._:@/+=,-]*", re.ASCII),
}


def value_problem(value: str, kind: ValueType, *, dash_ok: bool = False) -> str:
    """Why `value` may not fill a placeholder of type `kind` ('' when it may). Empty values are allowed: they
    cannot add a word or an option."""
    if value == "":
        return ""
    if kind == ValueType.IP:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return "is not an IP address"
        return ""
    if value.startswith("-") and not (kind == ValueType.WORD and dash_ok):
        return "starts with '-' (it would be read as an option)"
    if not _PATTERNS[kind].fullmatch(value):
        return f"has characters a {kind.value} value may not hold"
    if ".." in value:
        return "contains '..'"
    if kind == ValueType.HOST and value.lower() in INVENTORY_PATTERNS:
        return f"is {value!r}, which inventory tools (ansible -l) read as every host"
    return ""


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


# -- runbooks ------------------------------------------------------------------------------------------------------
def url_template_problems(url: str) -> list[str]:
    """Scheme, host and port come from the registry: placeholders may fill a path segment, a query value, or the
    whole host name (then the placeholder must be host-typed, checked by the runbook)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return [f"url {url!r}: {exc}"]
    problems = []
    if parts.scheme not in ("http", "https"):
        problems.append(f"url {url!r}: the scheme must be http or https, written in the registry")
    if "@" in parts.netloc:
        problems.append(f"url {url!r}: no user or password in a URL: name a secret in a header instead")
    host = parts.netloc.rsplit(":", 1)[0] if parts.port is not None else parts.netloc
    if placeholders(parts.netloc) and not PLACEHOLDER.fullmatch(host):
        problems.append(f"url {url!r}: a placeholder may stand for the whole host name only; port and scheme are fixed")
    if placeholders(parts.fragment):
        problems.append(f"url {url!r}: no placeholder in the fragment")
    for pair in parts.query.split("&") if parts.query else []:
        key = pair.split("=", 1)[0]
        if placeholders(key):
            problems.append(f"url {url!r}: a placeholder may fill a query value, not a query name")
    return problems


def url_host_placeholder(url: str) -> str:
    """The placeholder standing for the host name of a URL template ('' when the host is written out)."""
    netloc = urlsplit(url).netloc
    found = placeholders(netloc)
    return found[0] if found else ""


class HttpCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    json_body: dict[str, object] | None = Field(default=None, alias="json")
    # Literal values, or `{secret: NAME}` filled in by the worker; a credential written out is refused.
    headers: dict[str, Value] = {}
    expect_status: list[int] = [200, 201, 202, 204]

    @model_validator(mode="after")
    def _safe_template(self) -> HttpCall:
        problems = url_template_problems(self.url) + literal_credentials(self.headers, "header")
        problems += [
            f"header {name!r}: no placeholder in a header"
            for name, v in self.headers.items()
            if isinstance(v, str) and placeholders(v)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Step(BaseModel):
    """One runbook step: an argv command (never a shell string) or an HTTP call. `{name}` placeholders are filled
    from the run's variables (host, change, params), each value checked against its type first."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    command: list[str] | None = None
    http: HttpCall | None = None
    # The child process's environment beyond PATH, HOME and LANG: literal values or `{secret: NAME}`.
    env: dict[str, Value] = {}
    # Placeholders whose value may start with '-': each must sit after a literal "--" in `command`, where the
    # program reads it as a value, never as an option.
    after_double_dash: list[str] = []
    timeout: Duration = timedelta(minutes=5)
    # How soon a lost worker is noticed while this step runs (the step heartbeats every 2 s).
    heartbeat_timeout: Duration = timedelta(seconds=30)
    retries: int = Field(default=2, ge=0, le=20)
    # A cancel request while this step runs (README "Windows, holds and conflicts"): `kill` cancels the step (a command
    # is killed); `finish` lets it run to its end first (a step that must never be cut in half: a schema migration).
    on_cancel: Literal["kill", "finish"] = "kill"

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

    @model_validator(mode="after")
    def _safe_env_and_dashes(self) -> Step:
        problems = literal_credentials(self.env, "env")
        problems += [
            f"env {name!r}: not a variable name" for name in self.env if not re.fullmatch(r"[A-Za-z_]\w*", name)
        ]
        for name in self.after_double_dash:
            if self.command is None:
                problems.append(f"after_double_dash {name!r}: only a command step has a '--'")
                continue
            end = self.command.index("--") if "--" in self.command else len(self.command)
            early = [part for part in self.command[:end] if name in placeholders(part)]
            late = [part for part in self.command[end:] if name in placeholders(part)]
            if early or not late:
                problems.append(f"after_double_dash {name!r}: the placeholder must appear only after a literal '--'")
        if problems:
            raise ValueError(f"step {self.name!r}: " + "; ".join(problems))
        return self

    def secret_refs(self) -> list[SecretRef]:
        values = [*self.env.values(), *(self.http.headers.values() if self.http else [])]
        return [value for value in values if isinstance(value, SecretRef)]


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
    # Who may approve a destructive runbook (docs/architecture.md, "Trust"): ServiceNow user names and/or a ServiceNow
    # group whose members may. The registry refuses a destructive runbook that names neither (config/registry.py).
    approvers: list[str] = []
    approver_group: str = ""
    # The change types that may run this runbook; a normal or emergency change reaches Scheduled through its CAB.
    change_types: list[Literal["standard", "normal", "emergency"]] = ["standard"]
    params: dict[str, str] = {}
    inputs: list[str] = []  # required named inputs for /api/flows/{flow}/run
    optional_inputs: list[str] = []
    steps: list[Step] = []
    note_batch_size: int = Field(default=5, ge=1)
    note_batch_seconds: float = Field(default=10.0, ge=0)
    # Types of this runbook's own placeholders (params, flow inputs); host/fqdn/change/ip are typed by name already.
    types: dict[str, ValueType] = {}
    # The change's planned window (start_date / end_date) and ServiceNow's blackout and maintenance schedules:
    # `respect` waits for them and stops at the window's end; `ignore` is the break-glass opt-out (emergencies).
    window: Literal["respect", "ignore"] = "respect"
    # When the planned end passes mid-run, what runs `finish`es; a wave's running hosts may `roll_back` instead.
    window_end: Literal["finish", "roll_back"] = "finish"
    # Change tasks on the change (README "Evidence on the ticket"): `per_step` opens one change_task per step when
    # the step starts and closes it with the step's outcome; on a patch wave: one for the canary, one per failed or
    # rolled-back host and one summary task. `task_group` names the tasks' assignment group; empty: the CI's.
    tasks: Literal["none", "per_step"] = "none"
    task_group: str = ""

    def value_type(self, name: str) -> ValueType:
        return self.types.get(name) or BUILTIN_TYPES.get(name, ValueType.WORD)

    @model_validator(mode="after")
    def _task_keys_are_unique(self) -> Runbook:
        # A step's task is found again by `<execution>:<step name>`: two steps of one name would share one task.
        names = [step.name for step in self.steps]
        if self.tasks == "per_step" and len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"tasks: per_step needs step names of their own; named twice: {', '.join(twice)}")
        return self

    @model_validator(mode="after")
    def _url_hosts_are_host_typed(self) -> Runbook:
        for step in self.steps:
            name = url_host_placeholder(step.http.url) if step.http else ""
            if name and self.value_type(name) != ValueType.HOST:
                raise ValueError(
                    f"step {step.name!r}: {{{name}}} stands for the URL's host, so it must be typed host "
                    f"(types: {{{name}: host}})"
                )
        return self


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


# Fields added after digests were first carried by running executions: left out of the digest while they hold their
# default, so an upgrade does not change the digest of an entry that does not use them (a run in flight would be
# refused its next step as RegistryChanged).
LATER_RUNBOOK_FIELDS = {"window": "respect", "window_end": "finish", "tasks": "none", "task_group": ""}
LATER_STEP_FIELDS = {"on_cancel": "kill"}


def runbook_digest(runbook: Runbook) -> str:
    """sha256 of the registry entry as the worker resolved it (defaults applied), in canonical JSON: a run carries
    it, and every step it runs is looked up again and refused when the entry changed meanwhile."""
    data = runbook.model_dump(mode="json", by_alias=True)
    for name, default in LATER_RUNBOOK_FIELDS.items():
        if data.get(name) == default:
            data.pop(name)
    for step in data.get("steps", []):
        for name, default in LATER_STEP_FIELDS.items():
            if step.get(name) == default:
                step.pop(name)
    return hashlib.sha256(canonical_json(data)).hexdigest()


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
