"""Runbook steps: an argv command or an HTTP call, with placeholders filled from the run's variables.

Commands run without a shell. Values substituted into a step must match SAFE_VALUE, because a command such as
`ssh host systemctl restart {service}` is re-parsed by the remote shell: ticket data must not be able to add
words to it. Long steps heartbeat so a lost worker is noticed within the heartbeat timeout, and a cancelled
activity kills its process.
"""

from __future__ import annotations

import re
import sys

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.processes import run_process
from config.runbooks import Step
from workflows import calls
from workflows.runbook.models import StepInput, StepOutput

SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:@/+=,-]*$")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
OUTPUT_TAIL = 4000
HEARTBEAT_SECONDS = 2.0


def step_variables(variables: dict[str, str]) -> dict[str, str]:
    return {"python": sys.executable} | variables


def fill(template: str, variables: dict[str, str], step: str) -> str:
    """Replace `{name}` placeholders; unknown names and unsafe values are refused, naming the step."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise ApplicationError(
                f"step {step!r} uses {{{name}}} but the run has no such variable (have: {', '.join(sorted(variables))})",
                type="MissingVariable",
                non_retryable=True,
            )
        value = variables[name]
        if name != "python" and not SAFE_VALUE.match(value):
            raise ApplicationError(
                f"step {step!r}: value of {{{name}}} has characters that are not allowed: {value!r}",
                type="UnsafeVariable",
                non_retryable=True,
            )
        return value

    return PLACEHOLDER.sub(replace, template)


def _tail(text: str) -> str:
    return text[-OUTPUT_TAIL:]


async def run_command(step: Step, variables: dict[str, str]) -> StepOutput:
    assert step.command is not None
    argv = [fill(part, variables, step.name) for part in step.command]
    try:
        finished = await run_process(argv, step.name)
    except FileNotFoundError as exc:
        raise ApplicationError(
            f"step {step.name!r}: {argv[0]} not found", type="CommandNotFound", non_retryable=True
        ) from exc
    output = _tail(finished.output.decode(errors="replace"))
    if finished.returncode != 0:
        raise ApplicationError(
            f"step {step.name!r} exited with {finished.returncode}: {output.strip()[-500:]}",
            {"output": output, "exit_code": finished.returncode, "attempt": activity.info().attempt},
            type="StepFailed",
        )
    return StepOutput(output=output)


async def run_http(step: Step, variables: dict[str, str]) -> StepOutput:
    assert step.http is not None
    call = step.http
    url = fill(call.url, variables, step.name)
    timeout = step.timeout.total_seconds()
    async with httpx.AsyncClient(timeout=timeout) as http:
        request = http.request(call.method, url, json=call.json_body, headers=call.headers)
        try:
            response = await heartbeating(request, step.name, every=HEARTBEAT_SECONDS)
        except httpx.TransportError as exc:
            raise ApplicationError(
                f"step {step.name!r}: {type(exc).__name__} calling {url}", type="StepFailed"
            ) from exc
    output = _tail(response.text)
    if response.status_code not in call.expect_status:
        raise ApplicationError(
            f"step {step.name!r}: {call.method} {url} answered {response.status_code}",
            {"output": output, "status": response.status_code, "attempt": activity.info().attempt},
            type="StepFailed",
        )
    return StepOutput(output=output)


@activity.defn(name=calls.RUN_STEP.name)
async def run_step(request: StepInput) -> StepOutput:
    variables = step_variables(request.variables)
    if request.step.command is not None:
        return await run_command(request.step, variables)
    return await run_http(request.step, variables)
