"""Inbound REST API rate limiting as an instance does it: rules per user, per role or for all users, per hour.

From markdown/api-reference/rest-api-explorer/inbound-REST-API-rate-limiting.md and create-REST-API-rate-limits.md:
- a rule (sys_rate_limit_rules) limits the requests to one REST API resource to `limit` per hourly window, for a
  single user, for users with a role, or for all users; the count is kept per user;
- priority: a Single-user rule overrides Users-with-role and All-users rules; a role rule overrides All users; when
  several role rules match a user's roles, the one allowing the fewest requests applies;
- every request a rule matches carries `X-RateLimit-Limit` (requests allowed per hour), `X-RateLimit-Reset` (UNIX
  time of the window's end) and `X-RateLimit-Rule` (the rule's sys_id);
- a request over the limit answers 429 with `Retry-After` (seconds) and
  `{"error":{"message":"Rate limit exceeded","detail":"Rate limit of 100 requests per hour for Table API exceeded"}}`;
- changing a rule's limit resets its counts (here: any `configure`), and "Reset Rate Limit Counts" sets them to zero
  (`reset_counts`).

Windows are aligned to multiples of `window_seconds` since the epoch, so the default 3600 resets on the clock hour.
Tests shorten `window_seconds` (e.g. 2) instead of waiting an hour. The sandbox counts exactly (a real node commits
its counts every 30 s, so a real rule may let a few extra requests through); the refused request is not counted.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Api = Literal["table", "attachment"]
API_NAMES: dict[str, str] = {"table": "Table API", "attachment": "Attachment API"}


def rule_sys_id(name: str) -> str:
    return hashlib.md5(f"sys_rate_limit_rules:{name}".encode(), usedforsecurity=False).hexdigest()


class RateLimitRule(BaseModel):
    name: str
    sys_id: str = ""  # derived from the name when left empty: X-RateLimit-Rule is stable across restarts
    api: Api | None = None  # the REST API; None covers the Table and the Attachment API
    method: str | None = None  # None covers every method of the resource
    table: str | None = None  # Table API only; None covers every table
    apply_to: Literal["user", "role", "all"] = "all"
    user: str | None = None  # apply_to "user"
    role: str | None = None  # apply_to "role"
    limit: int = Field(ge=0)  # "Request limit per hour" (per window)
    active: bool = True

    @model_validator(mode="after")
    def _complete(self) -> RateLimitRule:
        if self.apply_to == "user" and not self.user:
            raise ValueError("a Single user rule names its user")
        if self.apply_to == "role" and not self.role:
            raise ValueError("a Users with role rule names its role")
        if not self.sys_id:
            self.sys_id = rule_sys_id(self.name)
        return self

    def covers(self, api: str, method: str, table: str | None) -> bool:
        return (
            self.active
            and self.api in (None, api)
            and (self.method is None or self.method.upper() == method.upper())
            and (self.table is None or self.table == table)
        )


class RateLimitConfig(BaseModel):
    window_seconds: float = Field(default=3600.0, gt=0)
    rules: list[RateLimitRule] = Field(default_factory=list)


@dataclass(frozen=True)
class RateVerdict:
    """The applied rule's headers, and whether the request may proceed."""

    allowed: bool
    headers: dict[str, str]
    retry_after: int = 0
    detail: str = ""


class RateLimiter:
    def __init__(self, config: RateLimitConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._counts: dict[tuple[str, str, int], int] = {}
        self._config = RateLimitConfig()
        self.configure(config or RateLimitConfig())

    @property
    def config(self) -> RateLimitConfig:
        with self._lock:
            return self._config.model_copy(deep=True)

    def configure(self, config: RateLimitConfig) -> RateLimitConfig:
        with self._lock:
            self._config = config.model_copy(deep=True)
            self._counts.clear()
        return self.config

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def counts(self) -> dict[str, dict[str, int]]:
        """rule sys_id -> user -> requests counted in the current window."""
        with self._lock:
            window = self._window_index(self._clock())
            out: dict[str, dict[str, int]] = {}
            for (rule, user, index), count in self._counts.items():
                if index == window:
                    out.setdefault(rule, {})[user] = count
            return out

    def _window_index(self, now: float) -> int:
        return math.floor(now / self._config.window_seconds)

    def _applicable(
        self, user: str, roles: frozenset[str], api: str, method: str, table: str | None
    ) -> RateLimitRule | None:
        candidates = [rule for rule in self._config.rules if rule.covers(api, method, table)]
        for level in ("user", "role", "all"):
            matching = [
                rule
                for rule in candidates
                if rule.apply_to == level
                and (level != "user" or rule.user == user)
                and (level != "role" or rule.role in roles)
            ]
            if matching:
                return min(matching, key=lambda rule: rule.limit)
        return None

    def check(self, user: str, roles: Iterable[str], api: str, method: str, table: str | None) -> RateVerdict | None:
        """Count one request; None when no rule matches it (no headers)."""
        with self._lock:
            rule = self._applicable(user, frozenset(roles), api, method, table)
            if rule is None:
                return None
            now = self._clock()
            index = self._window_index(now)
            reset = (index + 1) * self._config.window_seconds
            headers = {
                "X-RateLimit-Limit": str(rule.limit),
                "X-RateLimit-Reset": str(math.ceil(reset)),
                "X-RateLimit-Rule": rule.sys_id,
            }
            key = (rule.sys_id, user, index)
            used = self._counts.get(key, 0)
            if used >= rule.limit:
                retry_after = max(1, math.ceil(reset - now))
                period = "hour" if self._config.window_seconds == 3600 else f"{self._config.window_seconds:g} seconds"
                detail = f"Rate limit of {rule.limit} requests per {period} for {API_NAMES.get(api, api)} exceeded"
                return RateVerdict(False, {**headers, "Retry-After": str(retry_after)}, retry_after, detail)
            self._counts[key] = used + 1
            # Old windows are dropped as soon as a newer one is counted: memory stays per (rule, user).
            if used == 0:
                for stale in [k for k in self._counts if k[2] < index]:
                    del self._counts[stale]
            return RateVerdict(True, headers)
