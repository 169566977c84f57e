"""Runbook steps: an argv command or an HTTP call from the worker's own registry, placeholders filled with typed values.

A step runs by reference (runbook name, digest, index and name): it is looked up in this worker's registry and
refused when the entry is unknown or changed (activities/runbook/lookup.py `entry`). Nothing in the activity's input
is a command, a URL or a header.

Values are typed by the registry (config/runbooks.py `ValueType`) because a command such as
`ssh {host} systemctl restart {service}` is re-parsed by ssh and the remote shell: a ticket's value must not add a
word, an option (`-oProxyCommand=...`) or a path (`..`). In a URL, scheme, host and port come from the template; a
value fills a path segment or a query value, percent-encoded, and a host-typed `{host}` may stand for the host
name, which must then pass the outbound allowlist (ops/outbound.py). Commands run without a shell, in a minimal
environment (activities/processes.py), with the step's named secrets filled in here. Long steps heartbeat so a lost
worker is noticed within the heartbeat timeout, and a cancelled activity kills its process.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Collection
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.evidence.text import capped, clean
from activities.heartbeat import heartbeating
from activities.processes import run_process
from activities.runbook.lookup import entry
from config.registry import Registry
from config.runbooks import BUILTIN_TYPES, PLACEHOLDER, WORKER_BUILT, Runbook, Step, ValueType, value_problem
from config.secrets import NamedSecrets, SecretsError
from config.settings import Settings
from ops import outbound
from workflows import calls
from workflows.runbook.models import REGISTRY_CHANGED, RunbookRef, StepInput, StepOutput

HEARTBEAT_SECONDS = 2.0

TypeOf = Callable[[str], ValueType]


def builtin_type(name: str) -> ValueType:
    return BUILTIN_TYPES.get(name, ValueType.WORD)


def step_variables(variables: dict[str, str]) -> dict[str, str]:
    return {"python": sys.executable} | variables


def typed_value(
    name: str, variables: dict[str, str], step: str, type_of: TypeOf = builtin_type, *, dash_ok: bool = False
) -> str:
    """The value of `{name}`, checked against its type; refused (non-retryable, naming the step) otherwise."""
    if name not in variables:
        raise ApplicationError(
            f"step {step!r} uses {{{name}}} but the run has no such variable (have: {', '.join(sorted(variables))})",
            type="MissingVariable",
            non_retryable=True,
        )
    value = variables[name]
    if name in WORKER_BUILT:
        return value
    problem = value_problem(value, type_of(name), dash_ok=dash_ok)
    if problem:
        raise ApplicationError(
            f"step {step!r}: value of {{{name}}} is not allowed as a {type_of(name).value}: it {problem}: {value!r}",
            type="UnsafeVariable",
            non_retryable=True,
        )
    return value


def fill(
    template: str,
    variables: dict[str, str],
    step: str,
    type_of: TypeOf = builtin_type,
    dash_ok: Collection[str] = (),
) -> str:
    """Replace `{name}` placeholders of one argv element; unknown names and values of the wrong type are refused."""
    return PLACEHOLDER.sub(
        lambda m: typed_value(m.group(1), variables, step, type_of, dash_ok=m.group(1) in dash_ok), template
    )


def fill_argv(step: Step, variables: dict[str, str], type_of: TypeOf) -> list[str]:
    assert step.command is not None
    return [fill(part, variables, step.name, type_of, step.after_double_dash) for part in step.command]


def fill_url(template: str, variables: dict[str, str], step: str, type_of: TypeOf) -> str:
    """Scheme, host and port from the template; a host-typed value may stand for the host name; every other value
    fills a path segment or a query value, percent-encoded (a '/', '?', '#' or '@' in it stays data)."""
    parts = urlsplit(template)

    def encoded(match: re.Match[str]) -> str:
        return quote(typed_value(match.group(1), variables, step, type_of, dash_ok=True), safe="")

    def host(match: re.Match[str]) -> str:
        value = typed_value(match.group(1), variables, step, type_of)
        if type_of(match.group(1)) != ValueType.HOST or not value:
            raise ApplicationError(f"step {step!r}: the URL's host must be a host name", type="UnsafeVariable")
        return value

    netloc = PLACEHOLDER.sub(host, parts.netloc)
    path = PLACEHOLDER.sub(encoded, parts.path)
    query = "&".join(
        key + (sep + PLACEHOLDER.sub(encoded, value) if sep else "")
        for key, sep, value in (pair.partition("=") for pair in parts.query.split("&") if parts.query)
    )
    url = urlunsplit((parts.scheme, netloc, path, query, parts.fragment))
    filled = urlsplit(url)
    expected = urlsplit(urlunsplit((parts.scheme, netloc, "", "", "")))
    if (filled.scheme, filled.hostname, filled.port) != (expected.scheme, expected.hostname, expected.port):
        raise ApplicationError(f"step {step!r}: a value changed the URL's host", type="UnsafeVariable")
    return url


class StepActivities:
    """Runs steps of this worker's registry; holds the registry, the outbound allowlist and the named secrets."""

    def __init__(self, registry: Registry, settings: Settings, secrets: NamedSecrets) -> None:
        self.registry = registry
        self.settings = settings
        self.allow = outbound.Allowlist.parse(settings.outbound_allow)
        self.secrets = secrets

    def _kept(self, text: str) -> str:
        """The output as the step returns it: scrubbed (this worker's secrets, in every form), then capped at
        CHANGELOOP_STEP_OUTPUT_MAX_BYTES, head and end kept. A site worker cannot upload it (no ServiceNow
        credentials): the runbook keeps it and attaches it to the change at its end."""
        data, _ = capped(clean(self.settings, text), self.settings.step_output_max_bytes)
        return data.decode(errors="replace")

    @activity.defn(name=calls.RUN_STEP.name)
    async def run_step(self, request: StepInput) -> StepOutput:
        runbook = entry(self.registry, RunbookRef(name=request.runbook, digest=request.digest))
        step = self._step(runbook, request)
        variables = step_variables(request.variables)
        if step.command is not None:
            return await self.run_command(step, variables, runbook.value_type)
        return await self.run_http(step, variables, runbook.value_type)

    @staticmethod
    def _step(runbook: Runbook, request: StepInput) -> Step:
        if not 0 <= request.index < len(runbook.steps) or runbook.steps[request.index].name != request.name:
            raise ApplicationError(
                f"runbook {runbook.name!r} has no step {request.name!r} at position {request.index + 1}",
                type=REGISTRY_CHANGED,
                non_retryable=True,
            )
        return runbook.steps[request.index]

    def _filled(self, values: dict[str, str | object], step: Step) -> dict[str, str]:
        try:
            return self.secrets.fill(values)  # type: ignore[arg-type]
        except SecretsError as exc:
            raise ApplicationError(f"step {step.name!r}: {exc}", type="SecretNotAllowed", non_retryable=True) from None

    async def run_command(self, step: Step, variables: dict[str, str], type_of: TypeOf) -> StepOutput:
        argv = fill_argv(step, variables, type_of)
        env = self._filled(dict(step.env), step)
        try:
            finished = await run_process(argv, step.name, env=env)
        except FileNotFoundError as exc:
            raise ApplicationError(
                f"step {step.name!r}: {argv[0]} not found", type="CommandNotFound", non_retryable=True
            ) from exc
        output = self._kept(finished.output.decode(errors="replace"))
        if finished.returncode != 0:
            raise ApplicationError(
                f"step {step.name!r} exited with {finished.returncode}: {output.strip()[-500:]}",
                {"output": output, "exit_code": finished.returncode, "attempt": activity.info().attempt},
                type="StepFailed",
            )
        return StepOutput(output=output)

    async def run_http(self, step: Step, variables: dict[str, str], type_of: TypeOf) -> StepOutput:
        assert step.http is not None
        call = step.http
        url = fill_url(call.url, variables, step.name, type_of)
        headers = self._filled(dict(call.headers), step)
        async with httpx.AsyncClient(timeout=step.timeout.total_seconds()) as http:
            request = outbound.send(http, call.method, url, self.allow, json=call.json_body, headers=headers)
            try:
                response = await heartbeating(request, step.name, every=HEARTBEAT_SECONDS)
            except outbound.OutboundRefused as exc:
                raise ApplicationError(
                    f"step {step.name!r}: {exc}", type="OutboundRefused", non_retryable=True
                ) from None
            except outbound.OutboundUnreachable as exc:
                raise ApplicationError(f"step {step.name!r}: {exc}", type="StepFailed") from None
            except httpx.TransportError as exc:
                raise ApplicationError(
                    f"step {step.name!r}: {type(exc).__name__} calling {url}", type="StepFailed"
                ) from None
        output = self._kept(response.text)
        if response.status_code not in call.expect_status:
            raise ApplicationError(
                f"step {step.name!r}: {call.method} {url} answered {response.status_code}",
                {"output": output, "status": response.status_code, "attempt": activity.info().attempt},
                type="StepFailed",
            )
        return StepOutput(output=output)
