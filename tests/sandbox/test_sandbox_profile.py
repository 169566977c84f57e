"""Profiles: `default` answers at once; `realistic` is slow like a production instance and rate-limits its user."""

from __future__ import annotations

import time
import uuid

import httpx

from sandbox.profile import Profile, ProfileChoice, preset
from sandbox.ratelimit import rule_sys_id
from sandbox.server import SandboxConfig, SandboxServer
from tests.sandbox.support import INTEGRATION, result


def _timed(call: httpx.Client, path: str, **params: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call.get(path, params=params)
    return response, time.monotonic() - started


def test_the_default_profile_adds_no_latency_and_no_rate_limit(api: httpx.Client, control: httpx.Client) -> None:
    profile = control.get("/profile").json()
    assert profile["name"] == "default"
    assert (profile["latency_ms"], profile["jitter_ms"], profile["per_row_ms"]) == (0, 0, 0)
    assert profile["rate_limits"]["rules"] == []
    assert not any(name.startswith("x-ratelimit") for name in api.get("/api/now/table/cmn_location").headers)


def test_a_sandbox_started_realistic_is_slow_and_rate_limits_the_integration_user() -> None:
    with SandboxServer(SandboxConfig(port=0, profile="realistic")) as server:
        with httpx.Client(base_url=server.url, auth=INTEGRATION, timeout=10) as api:
            profile = httpx.get(f"{server.url}/sandbox/profile").json()
            assert profile["name"] == "realistic"
            assert (profile["latency_ms"], profile["jitter_ms"], profile["per_row_ms"]) == (150, 50, 0.5)
            [rule] = profile["rate_limits"]["rules"]
            assert (rule["apply_to"], rule["user"], rule["limit"]) == ("user", "changeloop.integration", 72000)
            assert profile["rate_limits"]["window_seconds"] == 3600

            durations = []
            for _ in range(3):
                response, took = _timed(api, "/api/now/table/cmn_location", sysparm_limit="1")
                assert response.status_code == 200
                assert response.headers["X-RateLimit-Limit"] == "72000"
                assert response.headers["X-RateLimit-Rule"] == rule_sys_id("changeloop integration user")
                durations.append(took)
            assert min(durations) >= 0.1  # 150 ms ± 50 ms


def test_page_cost_grows_with_the_rows_returned(api: httpx.Client, control: httpx.Client) -> None:
    control.put(
        "/profile", json={"name": "realistic", "latency_ms": 0, "jitter_ms": 0, "per_row_ms": 20}
    ).raise_for_status()
    location = {"name": f"profile-{uuid.uuid4().hex[:8]}"}
    for _ in range(15):
        result(api.post("/api/now/table/cmn_location", json=location), 201)
    query = f"name={location['name']}"

    one, took_one = _timed(api, "/api/now/table/cmn_location", sysparm_query=query, sysparm_limit="1")
    many, took_many = _timed(api, "/api/now/table/cmn_location", sysparm_query=query, sysparm_limit="15")
    assert len(one.json()["result"]) == 1 and len(many.json()["result"]) == 15
    assert took_many >= 15 * 0.020  # 20 ms per row returned
    assert took_one < took_many


def test_choosing_a_profile_replaces_the_rate_limits_and_reset_faults_restores_the_start_profile(
    api: httpx.Client, control: httpx.Client
) -> None:
    chosen = control.put(
        "/profile", json={"name": "realistic", "latency_ms": 0, "jitter_ms": 0, "per_row_ms": 0}
    ).json()
    assert chosen["name"] == "realistic" and chosen["latency_ms"] == 0
    assert [r["name"] for r in control.get("/rate-limits").json()["rules"]] == ["changeloop integration user"]
    assert api.get("/api/now/table/cmn_location", params={"sysparm_limit": "1"}).headers["X-RateLimit-Limit"] == "72000"

    control.post("/reset-faults").raise_for_status()
    assert control.get("/profile").json()["name"] == "default"
    assert control.get("/rate-limits").json()["rules"] == []


def test_latency_is_150_plus_minus_50_ms_and_repeats_from_the_same_seed() -> None:
    first, second = Profile(preset("realistic")), Profile(preset("realistic"))
    delays = [first.call_delay() for _ in range(500)]
    assert delays == [second.call_delay() for _ in range(500)]
    assert 0.1 <= min(delays) < 0.11 and 0.19 < max(delays) <= 0.2
    assert abs(sum(delays) / len(delays) - 0.15) < 0.01
    assert Profile(ProfileChoice(name="realistic", seed=7).resolve()).call_delay() != delays[0]
    assert Profile(preset("default")).call_delay() == 0.0
