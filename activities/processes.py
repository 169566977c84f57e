"""Child processes of the worker: an argv (never a shell), its output, a heartbeat while it runs, and a kill when
the activity is cancelled or its time is up. Runbook steps, host drivers and inventory commands all start their
processes here."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from activities.heartbeat import heartbeating


@dataclass(frozen=True)
class Finished:
    returncode: int
    output: bytes  # stdout, with stderr merged into it unless `separate_stderr`
    errors: bytes = b""


async def run_process(
    argv: list[str], what: str, *, within: float | None = None, separate_stderr: bool = False
) -> Finished:
    """Run `argv` to its end. FileNotFoundError / OSError when it cannot start; TimeoutError after `within` seconds."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if separate_stderr else asyncio.subprocess.STDOUT,
    )
    try:
        out, err = await asyncio.wait_for(heartbeating(process.communicate(), what), within)
    except (asyncio.CancelledError, TimeoutError):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return Finished(process.returncode or 0, out or b"", err or b"")
