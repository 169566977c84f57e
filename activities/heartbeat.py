"""Heartbeats for long activities: a lost worker is noticed within the heartbeat timeout, and a cancelled activity
learns of it at its next heartbeat (then cancels what it was waiting for)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")
EVERY = 1.0  # seconds between heartbeats; the SDK throttles what it sends to the server


async def heartbeating(work: Awaitable[T], what: str, every: float = EVERY) -> T:
    """Await `work`, heartbeating meanwhile (outside an activity: just await). Cancellation cancels `work`."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            if activity.in_activity():
                activity.heartbeat(what)
            await asyncio.wait({task}, timeout=every)
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise
    return task.result()


@contextlib.asynccontextmanager
async def heartbeats(every: float = 5.0) -> AsyncIterator[None]:
    """Heartbeat in the background while a block runs (work handed to a thread, a long loop of awaits)."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def paced_heartbeats() -> contextlib.AbstractAsyncContextManager[None]:
    """`heartbeats()` several times per the activity's heartbeat timeout (at most every 5 s): a caller that narrows
    the timeout to seconds, to notice a lost worker soon, is not failed by a heartbeat sent too late."""
    timeout = activity.info().heartbeat_timeout
    return heartbeats(every=min(5.0, timeout.total_seconds() / 4) if timeout else 5.0)
