"""Misbehaviour on demand: rate limits, injected errors and timeouts, and the counters that prove what happened."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.sandbox.support import poll, result


def test_rate_limit_answers_429_with_retry_after_and_ratelimit_headers(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.put("/faults", json={"rate_limit": {"enabled": True, "rate": 0.5, "burst": 3}}).raise_for_status()
    answers = [api.get("/api/now/table/cmn_location", params={"sysparm_limit": "1"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.json()["status"] == "failure" and limited.json()["error"]["message"] == "Rate limit exceeded"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-RateLimit-Limit"] == "3" and limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["X-RateLimit-Reset"]) >= int(time.time())


def test_rate_limit_is_per_user(emulator, api: httpx.Client, control: httpx.Client) -> None:
    control.put("/faults", json={"rate_limit": {"enabled": True, "rate": 0.1, "burst": 1}}).raise_for_status()
    assert api.get("/api/now/table/cmn_location").status_code == 200
    assert api.get("/api/now/table/cmn_location").status_code == 429
    assert httpx.get(f"{emulator.url}/api/now/table/cmn_location", auth=("admin", "admin")).status_code == 200


def test_error_rate_answers_5xx_envelopes_before_doing_anything(api: httpx.Client, control: httpx.Client) -> None:
    control.put("/faults", json={"error_rate": 1.0, "error_statuses": [503]}).raise_for_status()
    name = f"never-{uuid.uuid4().hex[:8]}"
    response = api.post("/api/now/table/cmn_location", json={"name": name})
    assert response.status_code == 503 and response.json()["status"] == "failure"
    control.post("/reset-faults").raise_for_status()
    assert result(api.get("/api/now/table/cmn_location", params={"sysparm_query": f"name={name}"})) == []


def test_targeted_rule_fires_count_times_then_stops(api: httpx.Client, control: httpx.Client) -> None:
    rule = {"method": "GET", "table": "sys_user", "count": 2, "mode": "error_500"}
    control.put("/faults", json={"rules": [rule]}).raise_for_status()
    assert api.get("/api/now/table/cmn_location").status_code == 200  # other tables untouched
    codes = [api.get("/api/now/table/sys_user").status_code for _ in range(3)]
    assert codes == [500, 500, 200]


def test_timeout_after_write_commits_then_answers_late(emulator, control: httpx.Client) -> None:
    rule = {"method": "POST", "table": "incident", "count": 1, "mode": "timeout_after_write", "hang_seconds": 2}
    control.put("/faults", json={"rules": [rule]}).raise_for_status()
    marker = f"timeout-{uuid.uuid4().hex}"
    with httpx.Client(base_url=emulator.url, auth=("admin", "admin"), timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/api/now/table/incident", json={"correlation_id": marker})
    # The create timed out for the caller, yet the record exists: a blind retry would duplicate it. (Read with the
    # usual timeout: only the faulted POST is meant to time out.)
    with httpx.Client(base_url=emulator.url, auth=("admin", "admin"), timeout=10) as patient:
        rows = patient.get("/api/now/table/incident", params={"sysparm_query": f"correlation_id={marker}"})
        assert len(rows.json()["result"]) == 1


def test_timeout_before_write_hangs_then_writes_nothing(api: httpx.Client, control: httpx.Client) -> None:
    rule = {"method": "POST", "table": "cmn_location", "mode": "timeout_before_write", "hang_seconds": 0.2}
    control.put("/faults", json={"rules": [rule]}).raise_for_status()
    name = f"late-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/now/table/cmn_location", json={"name": name}).status_code == 504
    assert result(api.get("/api/now/table/cmn_location", params={"sysparm_query": f"name={name}"})) == []


def test_error_after_write_commits_then_answers_502(api: httpx.Client, control: httpx.Client) -> None:
    rule = {"method": "POST", "table": "cmn_location", "mode": "error_after_write"}
    control.put("/faults", json={"rules": [rule]}).raise_for_status()
    name = f"lost-{uuid.uuid4().hex[:8]}"
    answer = api.post("/api/now/table/cmn_location", json={"name": name})
    assert answer.status_code == 502 and answer.json()["status"] == "failure"
    # The caller saw a failure, yet the record exists: a blind retry would duplicate it.
    assert len(result(api.get("/api/now/table/cmn_location", params={"sysparm_query": f"name={name}"}))) == 1


def test_lost_and_late_answer_rates_spoil_only_writes_after_they_commit(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.put("/faults", json={"lost_answer_rate": 1.0}).raise_for_status()
    assert api.get("/api/now/table/cmn_location", params={"sysparm_limit": "1"}).status_code == 200
    name = f"lost-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/now/table/cmn_location", json={"name": name}).status_code == 502
    control.put("/faults", json={"late_answer_rate": 1.0, "timeout_seconds": 0.3}).raise_for_status()
    started = time.monotonic()
    created = result(api.post("/api/now/table/cmn_location", json={"name": f"{name}-late"}), 201)
    assert time.monotonic() - started >= 0.3 and created["name"] == f"{name}-late"
    control.post("/reset-faults").raise_for_status()
    query = {"sysparm_query": f"nameSTARTSWITH{name}"}
    assert sorted(r["name"] for r in result(api.get("/api/now/table/cmn_location", params=query))) == [
        name,
        f"{name}-late",
    ]


def test_latency_delays_every_answer(api: httpx.Client, control: httpx.Client) -> None:
    control.put("/faults", json={"latency_ms": 150}).raise_for_status()
    started = time.monotonic()
    api.get("/api/now/table/cmn_location", params={"sysparm_limit": "1"}).raise_for_status()
    assert time.monotonic() - started >= 0.15


def test_faults_are_readable_and_reset(control: httpx.Client) -> None:
    control.put("/faults", json={"error_rate": 0.25, "latency_ms": 5}).raise_for_status()
    assert control.get("/faults").json()["error_rate"] == 0.25
    assert control.post("/reset-faults").json()["error_rate"] == 0.0


def test_stats_count_requests_and_only_writes_that_changed_data(api: httpx.Client, control: httpx.Client) -> None:
    before = control.get("/stats").json()
    created = result(api.post("/api/now/table/cmn_location", json={"name": "stats"}), 201)
    api.get(f"/api/now/table/cmn_location/{created['sys_id']}").raise_for_status()
    api.get(f"/api/now/table/cmn_location/{uuid.uuid4().hex}")  # a 404 is a request, not a write
    after = poll(lambda: control.get("/stats").json())
    assert after["writes"] == before["writes"] + 1
    assert after["requests"]["GET"]["cmn_location"] == before["requests"].get("GET", {}).get("cmn_location", 0) + 2
    assert after["writes_by_table"]["cmn_location"] == before["writes_by_table"].get("cmn_location", 0) + 1
