"""The instance's rate limit rules (inbound-REST-API-rate-limiting.md): per user / role / all users, per window."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.ratelimit import rule_sys_id
from tests.sandbox.support import poll

HOUR = 3600


def _rules(control: httpx.Client, *rules: dict[str, Any], window: float = HOUR) -> None:
    control.put("/rate-limits", json={"window_seconds": window, "rules": list(rules)}).raise_for_status()


def _call(api: httpx.Client) -> httpx.Response:
    return api.get("/api/now/table/cmn_location", params={"sysparm_limit": "1"})


@pytest.fixture
def admin(emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, auth=("admin", "admin"), timeout=10) as client:
        yield client


def test_every_matched_call_carries_the_headers_and_the_call_over_the_limit_answers_429(
    api: httpx.Client, control: httpx.Client
) -> None:
    _rules(control, {"name": "integration", "apply_to": "user", "user": "changeloop.integration", "limit": 3})
    before = time.time()
    answers = [_call(api) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    for answer in answers:
        assert answer.headers["X-RateLimit-Limit"] == "3"
        assert answer.headers["X-RateLimit-Rule"] == rule_sys_id("integration")
        reset = int(answer.headers["X-RateLimit-Reset"])
        assert reset % HOUR == 0 and before < reset <= before + HOUR + 1  # the next clock hour
    limited = answers[-1]
    assert limited.json() == {
        "error": {
            "message": "Rate limit exceeded",
            "detail": "Rate limit of 3 requests per hour for Table API exceeded",
        },
        "status": "failure",
    }
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= int(limited.headers["X-RateLimit-Reset"]) - int(before) + 1  # up to the window's end
    assert control.get("/rate-limits").json()["counts"] == {rule_sys_id("integration"): {"changeloop.integration": 3}}


def test_calls_no_rule_matches_carry_no_rate_limit_headers(
    api: httpx.Client, admin: httpx.Client, control: httpx.Client
) -> None:
    assert not any(h.startswith("x-ratelimit") for h in _call(api).headers)  # no rules: the default profile
    _rules(
        control,
        {"name": "incident posts", "api": "table", "method": "POST", "table": "incident", "limit": 1},
        {
            "name": "integration only",
            "apply_to": "user",
            "user": "changeloop.integration",
            "api": "attachment",
            "limit": 1,
        },
    )
    assert "X-RateLimit-Rule" not in _call(api).headers  # other table, other API
    assert "X-RateLimit-Rule" not in _call(admin).headers
    posted = api.post("/api/now/table/incident", json={"short_description": "counted"})
    assert posted.status_code == 201 and posted.headers["X-RateLimit-Rule"] == rule_sys_id("incident posts")
    assert api.post("/api/now/table/incident", json={"short_description": "refused"}).status_code == 429
    listed = api.get("/api/now/attachment", params={"sysparm_limit": "1"})
    assert listed.status_code == 200 and listed.headers["X-RateLimit-Rule"] == rule_sys_id("integration only")
    assert api.get("/api/now/attachment", params={"sysparm_limit": "1"}).status_code == 429


def test_a_user_rule_beats_role_rules_which_beat_all_users_and_the_lowest_role_limit_wins(
    api: httpx.Client, admin: httpx.Client, control: httpx.Client
) -> None:
    _rules(
        control,
        {"name": "everyone", "apply_to": "all", "limit": 100},
        {"name": "incident writers", "apply_to": "role", "role": "sn_incident_write", "limit": 50},
        {"name": "change writers", "apply_to": "role", "role": "sn_change_write", "limit": 20},
        {"name": "the admin", "apply_to": "user", "user": "admin", "limit": 500},
    )
    assert _call(api).headers["X-RateLimit-Rule"] == rule_sys_id("change writers")  # both role rules match: lowest
    assert _call(admin).headers["X-RateLimit-Rule"] == rule_sys_id("the admin")
    control.put("/roles/changeloop.integration", json={"roles": []}).raise_for_status()
    assert _call(api).headers["X-RateLimit-Rule"] == rule_sys_id("everyone")


def test_the_count_starts_again_in_the_next_window(api: httpx.Client, control: httpx.Client) -> None:
    _rules(control, {"name": "tiny", "limit": 1}, window=1)
    # Within one 1 s window the second call is refused; calls straddling a boundary may both pass, so go on
    # until one is refused, then wait for the window to turn.
    limited = poll(lambda: (answer := _call(api)).status_code == 429 and answer, timeout=5)
    assert limited.headers["Retry-After"] == "1"
    assert "per 1 seconds" in limited.json()["error"]["detail"]
    assert poll(lambda: _call(api).status_code == 200, timeout=5)


def test_reset_counts_lets_the_user_call_again_at_once(api: httpx.Client, control: httpx.Client) -> None:
    _rules(control, {"name": "one", "limit": 1})
    assert [_call(api).status_code for _ in range(2)] == [200, 429]
    assert control.post("/rate-limits/reset").json()["counts"] == {}
    assert _call(api).status_code == 200


def test_an_incomplete_rule_is_refused(control: httpx.Client) -> None:
    assert (
        control.put("/rate-limits", json={"rules": [{"name": "who?", "apply_to": "user", "limit": 1}]}).status_code
        == 422
    )
    assert control.get("/rate-limits").json()["rules"] == []


def test_reset_faults_removes_the_rules(api: httpx.Client, control: httpx.Client) -> None:
    _rules(control, {"name": "gone soon", "limit": 0})
    assert _call(api).status_code == 429
    control.post("/reset-faults").raise_for_status()
    assert control.get("/rate-limits").json()["rules"] == []
    assert _call(api).status_code == 200
