"""Condition waits with a deadline: tests wait for a state, never for a guessed amount of time."""

# `timeout` here is a polling deadline, not a cancellation scope that asyncio.timeout could replace.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

from temporalio.client import Client, WorkflowExecutionStatus

T = TypeVar("T")


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ..., message: str | None = ...
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T], timeout: float = ..., interval: float = ..., message: str | None = ...
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
) -> Any:
    """Poll `predicate` (sync or async) until it returns a truthy value, and return that value.

    Raises `TimeoutError` naming the condition (and the last value seen) when `timeout` seconds pass first.
    Exceptions raised by the predicate propagate: a broken condition should fail loudly, not time out.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise TimeoutError(f"condition {what!r} not met within {timeout}s (last value: {result!r})")
        await asyncio.sleep(interval)


async def listed_runs(client: Client, workflow_id: str, at_least: int = 1, timeout: float = 20.0) -> list[Any]:
    """The runs of `workflow_id` that visibility lists, once it lists at least `at_least` of them.

    Visibility is eventually consistent: a run the server started or closed a moment ago may not be listed yet, so
    "exactly one run" is read only after the index shows the run(s) every test expects.
    """

    async def listed() -> list[Any] | None:
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        return runs if len(runs) >= at_least else None

    found: list[Any] = await wait_for(
        listed, timeout=timeout, interval=0.2, message=f"visibility lists {at_least} run(s) of {workflow_id}"
    )
    return found


async def listed_for_change(
    client: Client, number: str, ids: set[str], *, ended: set[str] | frozenset[str] = frozenset(), timeout: float = 20.0
) -> dict[str, Any]:
    """What `ChangeNumber = '<number>'` (the auditor's search) lists, id -> status, once it lists every one of `ids`
    and shows the `ended` ones as no longer running. The index lags the server: a run started or closed a moment ago
    may not be listed, or listed as running, yet."""

    async def caught_up() -> dict[str, Any] | None:
        found = {w.id: w.status async for w in client.list_workflows(f"ChangeNumber = '{number}'")}
        done = all(found.get(i) not in (None, WorkflowExecutionStatus.RUNNING) for i in ended)
        return found if done and (ids | ended) <= found.keys() else None

    listed: dict[str, Any] = await wait_for(
        caught_up, timeout=timeout, interval=0.2, message=f"ChangeNumber = '{number}' lists {sorted(ids | ended)}"
    )
    return listed


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses every connection for as long as the block runs.

    The socket stays bound and never listens: a connection gets "refused" at once, and no other process (another
    test process's server on a free port) can take the port meanwhile, as it could take a port found free and let go.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
