"""Misbehaviour on demand: a token-bucket rate limit per user and injected faults, set at start or through
`/sandbox/faults`. (The instance's own, documented rate limit rules are sandbox/ratelimit.py; this bucket is the
quick "answer 429 now" knob the client's retry tests use.)

The client's retry semantics (DESIGN.md §5: retry 429 after Retry-After, retry 5xx and timeouts, never retry
a POST blindly) can only be trusted if they were exercised against an instance that really misbehaves.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

FaultMode = Literal[
    "error_500", "error_503", "rate_limit", "timeout_before_write", "timeout_after_write", "error_after_write"
]
# Modes that let the write commit, then spoil the answer: late (after `hang_seconds`) or lost (502 from the gateway).
AFTER_WRITE = frozenset({"timeout_after_write", "error_after_write", "random_late_answer", "random_lost_answer"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RateLimitConfig(BaseModel):
    """A token bucket per user: `rate` requests per second sustained, `burst` at once. Off by default."""

    enabled: bool = False
    rate: float = Field(default=10.0, gt=0)
    burst: int = Field(default=20, ge=1)


class FaultRule(BaseModel):
    """A targeted fault for the next `count` matching Table API requests, e.g. one POST to incident."""

    method: str | None = None  # None matches every method
    table: str | None = None  # None matches every table
    count: int = Field(default=1, ge=1)
    mode: FaultMode
    hang_seconds: float = Field(default=5.0, ge=0)


class FaultConfig(BaseModel):
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_statuses: list[int] = Field(default_factory=lambda: [500, 503])
    latency_ms: int = Field(default=0, ge=0)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_seconds: float = Field(default=30.0, ge=0)
    # Of the writes (POST/PUT/PATCH/DELETE): the share that commit and then answer after `timeout_seconds`, and the
    # share that commit and then lose their answer (502). The caller cannot tell either from a write that failed.
    late_answer_rate: float = Field(default=0.0, ge=0, le=1)
    lost_answer_rate: float = Field(default=0.0, ge=0, le=1)
    rules: list[FaultRule] = Field(default_factory=list)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    random_seed: int | None = None
    # Response headers the Table/Attachment API leaves out, e.g. ["X-Total-Count"] or ["Link"]: what a client meets
    # behind a proxy that drops them (an instance itself omits them for sysparm_no_count /
    # sysparm_suppress_pagination_header, which the sandbox also honours).
    strip_headers: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Fault:
    """What to do to one request: answer `status` at once, or hang `hang_seconds` before/after the write."""

    mode: FaultMode | Literal["random_error", "random_timeout", "random_late_answer", "random_lost_answer"]
    status: int = 0
    hang_seconds: float = 0.0

    @property
    def after_write(self) -> bool:
        return self.mode in AFTER_WRITE


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch: int
    retry_after: int


class _Bucket:
    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.stamp = now


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config.model_copy(deep=True)
            self._random = random.Random(config.random_seed)
            self._buckets.clear()

    def pick(self, method: str, table: str) -> Fault | None:
        """Decide the fault (if any) for one Table API request; a targeted rule is consumed when it fires."""
        with self._lock:
            for rule in self._config.rules:
                if (rule.method or method).upper() == method.upper() and (rule.table or table) == table:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._config.rules.remove(rule)
                    status = {"error_500": 500, "error_503": 503, "rate_limit": 429, "error_after_write": 502}
                    return Fault(rule.mode, status=status.get(rule.mode, 0), hang_seconds=rule.hang_seconds)
            config, draw = self._config, self._random.random
            if config.error_rate and draw() < config.error_rate:
                return Fault("random_error", status=self._random.choice(config.error_statuses or [500]))
            if config.timeout_rate and draw() < config.timeout_rate:
                return Fault("random_timeout", hang_seconds=config.timeout_seconds)
            if method.upper() in WRITES:
                if config.late_answer_rate and draw() < config.late_answer_rate:
                    return Fault("random_late_answer", hang_seconds=config.timeout_seconds)
                if config.lost_answer_rate and draw() < config.lost_answer_rate:
                    return Fault("random_lost_answer", status=502)
        return None

    def take(self, user: str) -> RateDecision:
        """Spend one token of `user`'s bucket; the decision carries the X-RateLimit-* header values."""
        with self._lock:
            limits = self._config.rate_limit
            now = time.monotonic()
            if not limits.enabled:
                return RateDecision(True, 0, 0, 0, 0)
            bucket = self._buckets.setdefault(user, _Bucket(limits.burst, now))
            bucket.tokens = min(limits.burst, bucket.tokens + (now - bucket.stamp) * limits.rate)
            bucket.stamp = now
            allowed = bucket.tokens >= 1
            if allowed:
                bucket.tokens -= 1
            wait = 0.0 if allowed else (1 - bucket.tokens) / limits.rate
            full_in = (limits.burst - bucket.tokens) / limits.rate
            return RateDecision(
                allowed=allowed,
                limit=limits.burst,
                remaining=int(bucket.tokens),
                reset_epoch=int(time.time() + math.ceil(full_in)),
                retry_after=max(1, math.ceil(wait)),
            )
