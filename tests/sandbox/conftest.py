"""Sandbox tests talk to their own emulator over real HTTP, so the faults and config they bend stay theirs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.server import SandboxConfig, SandboxServer
from tests.sandbox.support import ADMIN, INTEGRATION, Capture


@pytest.fixture(scope="session")
def emulator() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, seed=True)) as server:
        yield server


@pytest.fixture(scope="session")
def api(emulator: SandboxServer) -> Iterator[httpx.Client]:
    """The Table API as the integration user (basic auth)."""
    with httpx.Client(base_url=emulator.url, auth=INTEGRATION, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def admin_api(emulator: SandboxServer) -> Iterator[httpx.Client]:
    """The Table API as admin: the admin role passes every ACL, so it sees what the integration user may not."""
    with httpx.Client(base_url=emulator.url, auth=ADMIN, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def control(emulator: SandboxServer) -> Iterator[httpx.Client]:
    """The `/sandbox/*` control panel (no auth)."""
    with httpx.Client(base_url=f"{emulator.url}/sandbox", timeout=10) as client:
        yield client


# What `PUT /sandbox/config` restores after every test: no rule target, default process settings.
DEFAULT_CONFIG = {
    "webhook_url": None,
    "webhook_token": None,
    "incident_token": None,
    "token_lifetime": 1799,
    "close_fields_data_policy": False,
    "approval_wait_for": "all",
    "change_api": True,
}


@pytest.fixture(autouse=True)
def behave_again(control: httpx.Client) -> Iterator[None]:
    """Every test leaves the instance without faults, rate limits, ACL rules or role changes, a webhook target, test
    blackouts or named approvers."""
    yield
    control.post("/reset-faults").raise_for_status()
    control.put("/config", json=DEFAULT_CONFIG).raise_for_status()
    control.delete("/blackouts").raise_for_status()
    control.delete("/approvers").raise_for_status()


@pytest.fixture
def capture() -> Iterator[Capture]:
    with Capture() as endpoint:
        yield endpoint
