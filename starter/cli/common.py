"""What every `changeloop` command shares: the consoles, the settings, a Temporal connection that waits, and the
runner that turns a command's coroutine into an exit code.

Commands that created a Temporal client end with `os._exit(code)` after their cleanup: the SDK's core runtime can
crash at interpreter exit in short one-shot processes (sdk-python issue 300), and an exit code of -11 after a
successful `schedules apply` would fail a deploy script for nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Coroutine
from typing import Any, NoReturn, TypeVar

from rich.console import Console

from config.settings import Settings, get_settings
from ops import scrub
from ops.logs import configure_logging

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)


def exit_now(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Refused(Exception):
    """The workflow said no (a validator refused the update) or is gone: a red line and the command's exit code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


async def updated(update: Awaitable[T], gone: str) -> T:
    """The answer of a validated update, or Refused: 1 when the workflow refused it, 2 when it does not run."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return await update
    except WorkflowUpdateFailedError as exc:
        raise Refused(1, str(exc.cause or exc)) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Refused(2, gone) from exc
        raise


def run(coroutine: Coroutine[Any, Any, int]) -> NoReturn:
    """Run a command that talks to Temporal; print a failure as one red line, not a traceback; then os._exit."""
    try:
        code = asyncio.run(coroutine)
    except Refused as exc:
        errors.print(f"[red]refused:[/red] {exc}", highlight=False)
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # the operator wants the reason, the traceback is for --log-level debug
        errors.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        code = 1
    exit_now(code)


def settings() -> Settings:
    loaded = get_settings()
    try:
        scrub.install(loaded)  # a secret under 8 characters stops every command here, before it connects
    except scrub.WeakSecret as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        exit_now(2)
    configure_logging(loaded.secret_values(), loaded.log_level)
    return loaded


async def connect(config: Settings, wait: float = 30.0) -> Any:
    """Connect, retrying for a while: in docker-compose the shim and worker may come up before Temporal."""
    from ops.connect import connect as connect_once

    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            return await connect_once(config)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1)
