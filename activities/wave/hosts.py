"""The host operator: snapshot, patch, health check, rollback and run_action, behind one interface.

Two drivers: `http` (a host-agent REST API; the sandbox fleet is one) and `command` (argv templates: ssh, ansible,
aws ssm ...). Which one operates a host is chosen per CI class or site in the registry's `hosts:` section.

Every operation heartbeats while it waits, so a lost worker is noticed within the heartbeat timeout and a
cancelled activity stops its request or kills its process. Every operation is idempotent: a snapshot is keyed by
its label (the change number), patching a host already at the target level is a no-op that says so, and a
rollback to the same snapshot twice lands in the same place. That is what makes retries after a worker crash safe.

A retried patch looks at the host first (`inspect`): when an earlier attempt applied the patch and its answer was
lost (a 502, a worker killed mid-call), the host is at the target (or no longer at the snapshot's level) and it is
not patched a second time; when the host's last transaction for this change was refused, the retry answers that
refusal again instead of repeating the call (a driver that keeps no transaction history cannot tell, and calls).
Whether the wave changed the host is the workflow's call, from the snapshot's level and the level reached, never
from this call's `changed` flag alone (workflows/wave/host.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.processes import run_process
from activities.runbook.steps import fill, step_variables
from config.hosts import CommandDriverConfig, HostsConfig, HttpDriverConfig
from config.secrets import NamedSecrets, SecretsError, Value
from config.settings import Settings
from workflows import calls
from workflows.wave.models import (
    HOST_NOT_FOUND,
    HOST_OPERATION_FAILED,
    HOST_UNREACHABLE,
    NO_HOST_DRIVER,
    CiRef,
    HostOpInput,
    HostOpResult,
)

OUTPUT_TAIL = 2000
NO_SECRETS = NamedSecrets([], {})


@dataclass(frozen=True)
class Inspected:
    """What a host says about itself before a retried patch: its level, and its last package transaction."""

    level: str
    last_label: str = ""  # who asked for the last transaction (a change number)
    last_level: str = ""  # the level it asked for
    last_result: str = ""  # applied | unchanged | failed
    last_message: str = ""


class HostOperator(Protocol):
    async def snapshot(self, ci: CiRef, label: str) -> HostOpResult: ...
    async def inspect(self, ci: CiRef) -> Inspected | None: ...  # None: this driver cannot read a host's level
    async def patch(self, ci: CiRef, level: str, label: str = "") -> HostOpResult: ...
    async def health_check(self, ci: CiRef) -> HostOpResult: ...
    async def rollback(self, ci: CiRef, snapshot_id: str) -> HostOpResult: ...
    async def run_action(self, ci: CiRef, action: str, args: dict[str, str]) -> HostOpResult: ...


# -- http ----------------------------------------------------------------------------------------------------------
class HttpOperator:
    """The host-agent API. 2xx = done; 404 = no such host; other 4xx = the host refused (not retried);
    5xx and transport errors = unreachable (retried)."""

    def __init__(self, config: HttpDriverConfig, settings: Settings, secrets: NamedSecrets | None = None) -> None:
        self.base_url = config.base_url.replace("{servicenow_url}", settings.servicenow_url.rstrip("/")).rstrip("/")
        self.config = config
        self.secrets = secrets or NO_SECRETS
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        # One pooled client per driver for the worker's lifetime: a wave runs thousands of calls.
        if self._http is None:
            self._http = httpx.AsyncClient(
                headers=_filled(self.secrets, self.config.headers),
                timeout=self.config.request_timeout.total_seconds(),
                limits=httpx.Limits(max_connections=500, max_keepalive_connections=200),
            )
        return self._http

    async def _call(self, method: str, ci: CiRef, op: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/hosts/{quote(ci.name, safe='')}/{op}"
        try:
            response = await heartbeating(self.http.request(method, url, json=body), f"{op} {ci.name}")
        except httpx.TransportError as exc:
            raise ApplicationError(
                f"{ci.name}: {op}: {type(exc).__name__} calling {url}", type=HOST_UNREACHABLE
            ) from exc
        data = _json(response)
        if response.is_success:
            return data
        # The agent's own words first: they end up in the ticket.
        message = f"{_error_message(data) or response.text[:300]} (HTTP {response.status_code})"
        if response.status_code == 404:
            raise ApplicationError(message, type=HOST_NOT_FOUND, non_retryable=True)
        if response.status_code >= 500 or response.status_code == 429:
            raise ApplicationError(message, type=HOST_UNREACHABLE)
        raise ApplicationError(message, type=HOST_OPERATION_FAILED, non_retryable=True)

    async def snapshot(self, ci: CiRef, label: str) -> HostOpResult:
        data = await self._call("POST", ci, "snapshots", {"label": label})
        snapshot_id = str(data.get("snapshot_id", ""))
        verb = "created" if data.get("created", True) else "already existed"
        return HostOpResult(snapshot_id=snapshot_id, level=str(data.get("level", "")), message=f"snapshot {verb}")

    async def inspect(self, ci: CiRef) -> Inspected | None:
        data = await self._call("GET", ci, "level")
        if not data.get("level"):
            return None
        last = data.get("last_patch") or {}
        return Inspected(
            level=str(data["level"]),
            last_label=str(last.get("label", "")),
            last_level=str(last.get("level", "")),
            last_result=str(last.get("result", "")),
            last_message=str(last.get("message", "")),
        )

    async def patch(self, ci: CiRef, level: str, label: str = "") -> HostOpResult:
        data = await self._call("POST", ci, "patch", {"level": level, "label": label})
        return HostOpResult(
            changed=bool(data.get("changed", True)),
            level=str(data.get("level", level)),
            message=data.get("message", ""),
        )

    async def health_check(self, ci: CiRef) -> HostOpResult:
        data = await self._call("GET", ci, "health")
        bad = {name: state for name, state in (data.get("services") or {}).items() if state != "running"}
        detail = ", ".join(f"{name} {state}" for name, state in bad.items())
        return HostOpResult(healthy=bool(data.get("healthy")), level=str(data.get("level", "")), message=detail)

    async def rollback(self, ci: CiRef, snapshot_id: str) -> HostOpResult:
        data = await self._call("POST", ci, "rollback", {"snapshot_id": snapshot_id})
        return HostOpResult(level=str(data.get("level", "")), message=data.get("message", ""))

    async def run_action(self, ci: CiRef, action: str, args: dict[str, str]) -> HostOpResult:
        data = await self._call("POST", ci, "actions", {"action": action, "args": args})
        return HostOpResult(message=str(data.get("output", "")))


def _filled(secrets: NamedSecrets, values: Mapping[str, Value]) -> dict[str, str]:
    """A driver's headers or env with its named secrets filled in, in the worker, when it is first used."""
    try:
        return secrets.fill(values)
    except SecretsError as exc:
        raise ApplicationError(str(exc), type=HOST_OPERATION_FAILED, non_retryable=True) from None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_message(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return str(error or data.get("detail", ""))


# -- command -------------------------------------------------------------------------------------------------------
class CommandOperator:
    """argv templates run without a shell; placeholder values are typed by activities/runbook/steps.py `fill`; the
    process gets a minimal environment plus the driver's `env` (activities/processes.py)."""

    def __init__(self, config: CommandDriverConfig, secrets: NamedSecrets | None = None) -> None:
        self.config = config
        self.secrets = secrets or NO_SECRETS

    def _variables(self, ci: CiRef, extra: dict[str, str]) -> dict[str, str]:
        host = {"host": ci.name, "ip": ci.ip_address, "fqdn": ci.fqdn or ci.name, "ci_class": ci.sys_class_name}
        return step_variables(self.config.vars | host | extra)

    async def _run(self, op: str, template: list[str], ci: CiRef, extra: dict[str, str]) -> tuple[int, str]:
        variables = self._variables(ci, extra)
        argv = [fill(part, variables, op) for part in template]
        try:
            finished = await run_process(argv, f"{op} {ci.name}", env=_filled(self.secrets, self.config.env))
        except FileNotFoundError as exc:
            raise ApplicationError(
                f"{ci.name}: {op}: {argv[0]} not found", type=HOST_OPERATION_FAILED, non_retryable=True
            ) from exc
        return finished.returncode, finished.output.decode(errors="replace")[-OUTPUT_TAIL:]

    async def _must(self, op: str, template: list[str], ci: CiRef, extra: dict[str, str]) -> str:
        code, output = await self._run(op, template, ci, extra)
        if code != 0:
            raise ApplicationError(
                f"{ci.name}: {op} exited with {code}: {output.strip()[-300:]}",
                type=HOST_OPERATION_FAILED,
                non_retryable=True,
            )
        return output

    async def snapshot(self, ci: CiRef, label: str) -> HostOpResult:
        output = await self._must("snapshot", self.config.snapshot, ci, {"label": label})
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        preserved = await self.level(ci)  # a snapshot does not change the level: the one it preserves
        return HostOpResult(snapshot_id=lines[-1] if lines else label, level=preserved or "", message="snapshot taken")

    async def level(self, ci: CiRef, target: str = "") -> str | None:
        if self.config.level is None:
            return None
        return (await self._must("level", self.config.level, ci, {"level": target})).strip() or None

    async def inspect(self, ci: CiRef) -> Inspected | None:
        current = await self.level(ci)
        return Inspected(level=current) if current else None

    async def patch(self, ci: CiRef, level: str, label: str = "") -> HostOpResult:
        current = await self.level(ci, level)
        if current == level:
            return HostOpResult(changed=False, level=level, message=f"already at {level}: nothing to do")
        output = await self._must("patch", self.config.patch, ci, {"level": level})
        reached = await self.level(ci, level)
        return HostOpResult(changed=True, level=reached or level, message=output.strip()[-300:])

    async def health_check(self, ci: CiRef) -> HostOpResult:
        code, output = await self._run("health_check", self.config.health_check, ci, {})
        return HostOpResult(healthy=code == 0, message="" if code == 0 else output.strip()[-300:])

    async def rollback(self, ci: CiRef, snapshot_id: str) -> HostOpResult:
        output = await self._must("rollback", self.config.rollback, ci, {"snapshot": snapshot_id})
        return HostOpResult(message=output.strip()[-300:])

    async def run_action(self, ci: CiRef, action: str, args: dict[str, str]) -> HostOpResult:
        template = self.config.actions.get(action)
        if template is None:
            raise ApplicationError(
                f"{ci.name}: no action {action!r} (have: {', '.join(sorted(self.config.actions)) or 'none'})",
                type=HOST_OPERATION_FAILED,
                non_retryable=True,
            )
        output = await self._must(action, template, ci, args | {"action": action})
        return HostOpResult(message=output.strip()[-OUTPUT_TAIL:])


# -- activities ----------------------------------------------------------------------------------------------------
class HostActivities:
    """The operator's activities; one driver instance per configured driver, built once per worker."""

    def __init__(self, config: HostsConfig, settings: Settings, secrets: NamedSecrets | None = None) -> None:
        self.config = config
        self.operators: dict[str, HostOperator] = {
            name: HttpOperator(driver, settings, secrets)
            if isinstance(driver, HttpDriverConfig)
            else CommandOperator(driver, secrets)
            for name, driver in config.drivers.items()
        }

    def operator(self, ci: CiRef) -> HostOperator:
        name = self.config.driver_for(ci.sys_class_name, ci.site)
        if name is None:
            raise ApplicationError(
                f"{ci.name}: no host driver for class {ci.sys_class_name!r} at site {ci.site!r}: "
                "add a rule or a default to the registry's hosts: section",
                type=NO_HOST_DRIVER,
                non_retryable=True,
            )
        return self.operators[name]

    @activity.defn(name=calls.HOST_SNAPSHOT.name)
    async def host_snapshot(self, request: HostOpInput) -> HostOpResult:
        return await self.operator(request.ci).snapshot(request.ci, request.label or request.change_number)

    @activity.defn(name=calls.HOST_PATCH.name)
    async def host_patch(self, request: HostOpInput) -> HostOpResult:
        operator, ci, label = self.operator(request.ci), request.ci, request.change_number
        if activity.info().attempt > 1:
            # An earlier attempt may have done the work and lost its answer: look before patching again.
            seen = await operator.inspect(ci)
            if seen is not None:
                return self._earlier_answer(request, seen) or await operator.patch(ci, request.level, label)
        return await operator.patch(ci, request.level, label)

    @staticmethod
    def _earlier_answer(request: HostOpInput, seen: Inspected) -> HostOpResult | None:
        """What an earlier attempt of this patch got, read off the host; None when it left no trace."""
        ours = seen.last_label == request.change_number and seen.last_level == request.level
        if ours and seen.last_result == "failed":
            message = f"{request.ci.name}: {seen.last_message} (the answer an earlier attempt did not receive)"
            raise ApplicationError(message, type=HOST_OPERATION_FAILED, non_retryable=True)
        if seen.level == request.level or (request.from_level and seen.level != request.from_level):
            return HostOpResult(
                changed=seen.level != request.from_level if request.from_level else False,
                level=seen.level,
                message=f"{request.from_level or '?'} -> {seen.level} (applied by an earlier attempt)",
            )
        return None

    @activity.defn(name=calls.HOST_HEALTH_CHECK.name)
    async def host_health_check(self, request: HostOpInput) -> HostOpResult:
        return await self.operator(request.ci).health_check(request.ci)

    @activity.defn(name=calls.HOST_ROLLBACK.name)
    async def host_rollback(self, request: HostOpInput) -> HostOpResult:
        return await self.operator(request.ci).rollback(request.ci, request.snapshot_id)

    @activity.defn(name=calls.HOST_RUN_ACTION.name)
    async def host_run_action(self, request: HostOpInput) -> HostOpResult:
        return await self.operator(request.ci).run_action(request.ci, request.action, request.args)
