"""The request budget: how fast one process may call ServiceNow, and who goes first.

A real instance limits the integration user per hour (rate limit rules, README "Performance"), and everything
changeloop does shares that user. A budget of `rate` requests per second, spent by every request of one process,
keeps the process under the instance's limit on its own terms; its priorities decide who waits when requests queue:
a change's lifecycle and incidents before wave notes, wave notes before the weekly reconciliation, so a bulk
reconciliation never makes a change wait behind its writes.

- Token bucket: `rate` tokens per second, at most `burst` saved up (a quiet spell lets the next requests go at once,
  so the average stays at `rate` even when the spender pauses between batches).
- Priority: a request that finds the bucket empty (or others already waiting) queues; each new token goes to the
  waiter of the highest priority, first come first served within a priority. A lower priority is never served
  while a higher one waits: it gets the tokens the higher priorities leave.
- A 429 pauses the whole budget until the instance's Retry-After: the instance refuses every request of the user
  until then, so nobody sends one (`pause`).

Which priority a request has is read from a context variable (`spending`), set once per unit of work (the worker
sets it per activity: activities/budget.py), never passed through call sites. This module knows nothing of
Temporal.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum


class Priority(IntEnum):
    """Lower value, served first."""

    CHANGE = 0  # a change's lifecycle, incidents, gates, flows: someone waits on the answer
    WAVE = 1  # patch waves: planning pages and batched work notes
    RECONCILE = 2  # the reconciliation's bulk reads and writes: nobody waits on any single one


@dataclass(frozen=True)
class Spender:
    """Who spends the budget: a priority, and a label the client counts calls by (the activity's name)."""

    priority: Priority = Priority.CHANGE
    label: str = ""


_SPENDER: ContextVar[Spender | None] = ContextVar("servicenow_spender", default=None)
_ANYONE = Spender()


def current_spender() -> Spender:
    """Who spends now; outside any `spending` block, a change (nothing ever waits behind unlabelled work)."""
    return _SPENDER.get() or _ANYONE


@contextmanager
def spending(priority: Priority, label: str = "") -> Iterator[Spender]:
    """Every ServiceNow request made inside (and in tasks started inside) is spent at `priority`."""
    spender = Spender(priority, label)
    token = _SPENDER.set(spender)
    try:
        yield spender
    finally:
        _SPENDER.reset(token)


class RequestBudget:
    """A priority-aware token bucket for one process's ServiceNow requests (see the module's docstring)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a request budget needs a rate above 0 requests per second")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._paused_until = 0.0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap of (priority, arrival, future)
        self._arrivals = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        # Figures for metrics and the benches: grants and seconds waited per priority, pauses after a 429.
        self.granted: Counter[Priority] = Counter()
        self.waited: defaultdict[Priority, float] = defaultdict(float)
        self.pauses = 0

    # -- spending ----------------------------------------------------------------------------------------------------
    async def acquire(self, priority: Priority = Priority.CHANGE) -> None:
        """Wait for this request's token."""
        now = self._clock()
        self._refill(now)
        if not self._waiters and now >= self._paused_until and self._tokens >= 1:
            self._tokens -= 1
            self.granted[priority] += 1
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._arrivals), future))
        self._ensure_dispatcher(loop)
        try:
            await future
        finally:
            self.waited[priority] += self._clock() - now
        self.granted[priority] += 1

    def pause(self, seconds: float) -> None:
        """The instance answered 429 with Retry-After `seconds`: nobody sends a request before then."""
        until = self._clock() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1
        self._tokens = min(self._tokens, 0.0)  # the window that refused us is spent: no burst right after it

    def paused_for(self) -> float:
        """Seconds until the budget spends again after a 429 (0 when it is not paused)."""
        return max(0.0, self._paused_until - self._clock())

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, future in self._waiters if not future.done())

    # -- the bucket --------------------------------------------------------------------------------------------------
    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def _ensure_dispatcher(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._dispatcher is not None and not self._dispatcher.done() and self._dispatcher.get_loop() is loop:
            return
        # First waiter, or the loop that ran the old dispatcher is gone (a test's loop): waiters of a dead loop
        # can never be woken, so only this loop's remain.
        self._waiters = [w for w in self._waiters if w[2].get_loop() is loop]
        heapq.heapify(self._waiters)
        self._dispatcher = loop.create_task(self._dispatch(), name="servicenow-budget")

    async def _dispatch(self) -> None:
        """Hands out tokens to waiters, highest priority first, while any wait."""
        while self._waiters:
            if self._waiters[0][2].done():  # its request was cancelled while it waited
                heapq.heappop(self._waiters)
                continue
            now = self._clock()
            self._refill(now)
            delay = max(self._paused_until - now, (1 - self._tokens) / self.rate if self._tokens < 1 else 0.0)
            if delay > 0:
                await asyncio.sleep(delay)  # a pause that grows meanwhile is seen on the next turn
                continue
            _, _, future = heapq.heappop(self._waiters)
            self._tokens -= 1
            future.set_result(None)
            await asyncio.sleep(0)  # let the granted request go before the next grant is decided
