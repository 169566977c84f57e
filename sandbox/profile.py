"""How the instance performs: `default` (answers at once, no rate limit: tests) or `realistic` (a production instance).

The realistic numbers (issue 16): each Table/Attachment API call takes 150 ms ± 50 ms (uniform, seeded, so a bench
run is repeatable), a list page costs 0.5 ms more per row it returns (rendering and ACL evaluation grow with the
page), and the integration user has an hourly rate limit rule (sandbox/ratelimit.py) of 72,000 requests per hour
(20 per second on average, the budget issue 16's reconcile bench spends), shared by the Table and Attachment APIs.

Each field can be overridden when the profile is chosen (`PUT /sandbox/profile`); the default profile never sleeps,
so it costs the tests nothing.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Literal

from pydantic import BaseModel, Field

from sandbox.ratelimit import RateLimitConfig, RateLimitRule

ProfileName = Literal["default", "realistic"]


class ProfileSettings(BaseModel):
    name: ProfileName = "default"
    latency_ms: float = Field(default=0.0, ge=0)  # per API call
    jitter_ms: float = Field(default=0.0, ge=0)  # uniform in [latency - jitter, latency + jitter]
    per_row_ms: float = Field(default=0.0, ge=0)  # added per row a list answers
    seed: int = 0  # the latency sequence repeats from the same seed
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)


INTEGRATION_RULE = RateLimitRule(
    name="changeloop integration user",
    apply_to="user",
    user="changeloop.integration",
    limit=72_000,
)


def preset(name: ProfileName) -> ProfileSettings:
    if name == "realistic":
        return ProfileSettings(
            name="realistic",
            latency_ms=150.0,
            jitter_ms=50.0,
            per_row_ms=0.5,
            rate_limits=RateLimitConfig(rules=[INTEGRATION_RULE]),
        )
    return ProfileSettings()


class ProfileChoice(BaseModel):
    """A PUT to /sandbox/profile: a preset by name, then any field given overrides the preset's."""

    name: ProfileName = "default"
    latency_ms: float | None = Field(default=None, ge=0)
    jitter_ms: float | None = Field(default=None, ge=0)
    per_row_ms: float | None = Field(default=None, ge=0)
    seed: int | None = None
    rate_limits: RateLimitConfig | None = None

    def resolve(self) -> ProfileSettings:
        overrides = self.model_dump(exclude_unset=True, exclude={"name"}, exclude_none=True)
        base = preset(self.name)
        if self.rate_limits is not None:
            overrides["rate_limits"] = self.rate_limits
        return base.model_copy(update=overrides)


class Profile:
    """The latency side of a profile (the rate limits go to the RateLimiter)."""

    def __init__(self, settings: ProfileSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = ProfileSettings()
        self._random = random.Random(0)
        self.configure(settings or ProfileSettings())

    @property
    def settings(self) -> ProfileSettings:
        with self._lock:
            return self._settings.model_copy(deep=True)

    def configure(self, settings: ProfileSettings) -> None:
        with self._lock:
            self._settings = settings.model_copy(deep=True)
            self._random = random.Random(settings.seed)

    def call_delay(self) -> float:
        """Seconds one call takes before its rows are counted."""
        with self._lock:
            latency, jitter = self._settings.latency_ms, self._settings.jitter_ms
            if not latency and not jitter:
                return 0.0
            return max(0.0, latency + self._random.uniform(-jitter, jitter)) / 1000

    def rows_delay(self, rows: int) -> float:
        with self._lock:
            return self._settings.per_row_ms * rows / 1000

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
