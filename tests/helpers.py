"""Condition waits with a deadline: tests wait for a state, never for a guessed amount of time."""

# `timeout` here is a polling deadline, not a cancellation scope that asyncio.timeout could replace.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

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
