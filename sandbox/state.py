"""Everything one running sandbox holds, reachable from each route as `request.app.state.sandbox`."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.acl import AccessControl
from sandbox.attachments import SystemProperties
from sandbox.auth import Authenticator
from sandbox.config import SandboxConfig
from sandbox.faults import FaultInjector
from sandbox.instance import Instance
from sandbox.profile import Profile, preset
from sandbox.ratelimit import RateLimiter

LOG_LIMIT = 100_000


@dataclass
class Stats:
    """Counters a test reads to prove what did (or did not) reach the instance."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    # Every request in the order it arrived (bounded): a test orders the calls of two workloads by it.
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_LIMIT))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_request(self, method: str, table: str, path: str = "") -> dict[str, Any]:
        """Count one request; answers its log entry, which the gate marks when a rate limit rule refuses it."""
        with self.lock:
            self.requests[(method, table)] += 1
            entry: dict[str, Any] = {
                "seq": sum(self.requests.values()),
                "at": time.time(),
                "method": method,
                "table": table,
                "path": path,
                "user": "",
                "rate_limited": False,
            }
            self.log.append(entry)
            return entry

    def count_write(self, table: str) -> None:
        with self.lock:
            self.writes[table] += 1

    def count_fault(self, mode: str) -> None:
        with self.lock:
            self.faults[mode] += 1

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.writes.clear()
            self.faults.clear()
            self.log.clear()

    def snapshot(self) -> dict[str, object]:
        with self.lock:
            by_method: dict[str, dict[str, int]] = {}
            for (method, table), count in self.requests.items():
                by_method.setdefault(method, {})[table] = count
            return {
                "requests": by_method,
                "total_requests": sum(self.requests.values()),
                "writes": sum(self.writes.values()),
                "writes_by_table": dict(self.writes),
                "faults": dict(self.faults),
            }

    def request_log(self, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self.log if entry["seq"] > since]


@dataclass
class SandboxState:
    config: SandboxConfig
    instance: Instance
    auth: Authenticator
    faults: FaultInjector
    stats: Stats = field(default_factory=Stats)
    # Access and performance policies, built from `config` (so build_state needs nothing more) and put back to it by
    # `restore_policies()` (`POST /sandbox/reset-faults`).
    access: AccessControl = field(init=False)
    profile: Profile = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    properties: SystemProperties = field(init=False)

    def __post_init__(self) -> None:
        # Every user who can log in has an entry: `itil` unless `config.roles` names their roles (a user added to
        # `users` can work on tasks at once; give them [] to have none).
        roles = {user: ["itil"] for user in self.config.users} | self.config.roles
        self.access = AccessControl(roles)
        self.profile = Profile()
        self.rate_limiter = RateLimiter()
        self.restore_policies()

    def restore_policies(self) -> None:
        """Roles as configured, no hidden rows, the configured profile and its rate limit rules, default properties."""
        self.access.reset()
        settings = preset(self.config.profile)
        self.profile.configure(settings)
        self.rate_limiter.configure(settings.rate_limits)
        self.properties = SystemProperties(attachment_max_size=self.config.attachment_max_size_mb)
