"""Condition waits with a deadline: tests wait for a state, never for a guessed amount of time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
    interval: float = 0.05,
    message: str | None = None,
) -> T:
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
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise TimeoutError(f"condition {what!r} not met within {timeout}s (last value: {result!r})")
        await asyncio.sleep(interval)
