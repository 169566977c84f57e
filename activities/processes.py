"""Child processes of the worker: an argv (never a shell), its output, a heartbeat while it runs, and a kill when
the activity is cancelled or its time is up. Runbook steps, host drivers and inventory commands all start their
processes here.

A child gets a minimal environment, never the worker's: PATH, HOME and LANG, the variables the operator passes to
every child (CHANGELOOP_CHILD_ENV: SSH_AUTH_SOCK, KUBECONFIG, proxies; never a secret), and what its step or driver
declares (`env`, with named secrets filled in by the caller). The worker's own credentials stay in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from activities.heartbeat import heartbeating

BASE_ENV = ("PATH", "HOME", "LANG")
_passed: set[str] = set()


def pass_through(names: Iterable[str]) -> None:
    """The operator's CHANGELOOP_CHILD_ENV: variables of the worker every child gets (set when a worker is built)."""
    _passed.update(names)


def child_env(declared: Mapping[str, str] | None = None) -> dict[str, str]:
    names = [*BASE_ENV, *sorted(_passed)]
    env = {name: os.environ[name] for name in names if name in os.environ}
    return env | dict(declared or {})


@dataclass(frozen=True)
class Finished:
    returncode: int
    output: bytes  # stdout, with stderr merged into it unless `separate_stderr`
    errors: bytes = b""


async def run_process(
    argv: list[str],
    what: str,
    *,
    within: float | None = None,
    separate_stderr: bool = False,
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run `argv` to its end with the minimal environment plus `env`. FileNotFoundError / OSError when it cannot
    start; TimeoutError after `within` seconds."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if separate_stderr else asyncio.subprocess.STDOUT,
        env=child_env(env),
    )
    try:
        out, err = await asyncio.wait_for(heartbeating(process.communicate(), what), within)
    except (asyncio.CancelledError, TimeoutError):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return Finished(process.returncode or 0, out or b"", err or b"")
