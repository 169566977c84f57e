"""Blackout and maintenance schedules: the seeded ones, span arithmetic, and the control panel's test blackout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from sandbox.schedules import Span, covers, overlapping, parse_time
from sandbox.seed import seed_sys_id
from tests.sandbox.support import result

MONDAY = datetime(2024, 1, 1, tzinfo=UTC)  # 2024-01-01 was a Monday


def at(days: float, hours: float = 0) -> datetime:
    return MONDAY + timedelta(days=days, hours=hours)


def span(**fields: str) -> dict[str, str]:
    return {"start_date_time": "2024-01-01 08:00:00", "end_date_time": "2024-01-01 18:00:00", **fields}


def test_a_weekly_span_occurs_on_its_days_at_its_hours() -> None:
    weekdays = span(repeat_type="weekly", days_of_week="12345")
    found = overlapping([weekdays], (at(0), at(7)))
    assert [(s.isoweekday(), s.hour, e.hour) for s, e in found] == [(d, 8, 18) for d in range(1, 6)]
    assert overlapping([weekdays], (at(5), at(7))) == []  # the weekend is free
    assert overlapping([weekdays], (at(7, 17.5), at(7, 19))) == [(at(7, 8), at(7, 18))]  # a week later, partly


def test_repeat_every_and_repeat_until_limit_the_occurrences() -> None:
    fortnightly = span(repeat_type="weekly", days_of_week="1", repeat_count="2")
    assert [s.day for s, _ in overlapping([fortnightly], (at(0), at(28)))] == [1, 15]
    daily_until = span(repeat_type="daily", repeat_until="2024-01-03")
    assert [s.day for s, _ in overlapping([daily_until], (at(0), at(10)))] == [1, 2, 3]
    weekends = span(repeat_type="weekends")
    assert [s.isoweekday() for s, _ in overlapping([weekends], (at(0), at(7)))] == [6, 7]


def test_a_span_that_does_not_repeat_occurs_once_and_a_span_across_midnight_keeps_its_length() -> None:
    once = span()
    assert overlapping([once], (at(0), at(30))) == [(at(0, 8), at(0, 18))]
    night = span(start_date_time="2024-01-01 22:00:00", end_date_time="2024-01-02 02:00:00", repeat_type="daily")
    assert overlapping([night], (at(2, 1), at(2, 1.5))) == [(at(1, 22), at(2, 2))]
    assert Span.of(span(end_date_time="2024-01-01 07:00:00")) is None  # ends before it starts: ignored


def test_a_maintenance_window_allows_only_what_it_covers() -> None:
    nightly = [span(start_date_time="2024-01-01 02:00:00", end_date_time="2024-01-01 04:00:00", repeat_type="daily")]
    assert covers(nightly, (at(3, 2), at(3, 4)))
    assert not covers(nightly, (at(3, 3), at(3, 5)))
    two_halves = [span(end_date_time="2024-01-01 12:00:00"), span(start_date_time="2024-01-01 12:00:00")]
    assert covers(two_halves, (at(0, 9), at(0, 17)))  # joined occurrences cover the window


def test_times_read_in_both_formats_as_utc() -> None:
    assert parse_time("2024-01-01 08:00:00") == parse_time("20240101T080000") == at(0, 8)
    assert parse_time("not a time") is None


def test_the_seed_has_a_weekly_blackout_for_legacy_batch_and_a_maintenance_window_for_the_wiki(
    api: httpx.Client,
) -> None:
    params = {"sysparm_query": "ORDERBYname", "sysparm_fields": "sys_id,name,type,time_zone,sys_class_name"}
    schedules = result(api.get("/api/now/table/cmn_schedule", params=params))
    assert [(s["name"], s["type"], s["time_zone"], s["sys_class_name"]) for s in schedules] == [
        ("Legacy batch business-hours freeze", "blackout", "UTC", "cmn_schedule_blackout"),
        ("Wiki maintenance window", "maintenance", "UTC", "cmn_schedule"),
    ]
    blackout = result(api.get(f"/api/now/table/cmn_schedule_blackout/{schedules[0]['sys_id']}"))
    assert blackout["condition"] == "name=legacy-batch"
    spans = result(api.get("/api/now/table/cmn_schedule_span", params={"sysparm_query": "ORDERBYname"}))
    assert [(s["name"], s["repeat_type"], s["days_of_week"]) for s in spans] == [
        ("Nightly 02:00-04:00 UTC", "daily", ""),
        ("Weekdays 08:00-18:00 UTC", "weekly", "12345"),
    ]
    wiki = result(api.get(f"/api/now/table/cmdb_ci/{seed_sys_id('cmdb_ci', 'internal-wiki')}"))
    assert wiki["maintenance_schedule"]["value"] == seed_sys_id("cmn_schedule", "Wiki maintenance window")
    with_schedule = result(
        api.get("/api/now/table/cmdb_ci", params={"sysparm_query": "maintenance_scheduleISNOTEMPTY"})
    )
    assert [ci["name"] for ci in with_schedule] == ["internal-wiki"]


def test_the_control_panel_adds_a_blackout_span_around_now_plus_a_to_now_plus_b(
    api: httpx.Client, control: httpx.Client
) -> None:
    before = datetime.now(UTC)
    added = control.post("/blackouts", json={"start_in": 5, "end_in": 65}).json()
    after = datetime.now(UTC)
    start, end = parse_time(added["start_date_time"]), parse_time(added["end_date_time"])
    assert start is not None and end is not None
    assert start <= before + timedelta(seconds=5) and end >= after + timedelta(seconds=65)
    assert end - start <= timedelta(seconds=63)  # widened to whole seconds, not more
    stored = result(api.get(f"/api/now/table/cmn_schedule_span/{added['span']}"))
    assert (stored["schedule"]["value"], stored["repeat_type"]) == (added["schedule"], "")
    schedule = result(api.get(f"/api/now/table/cmn_schedule/{added['schedule']}"))
    assert schedule["type"] == "blackout"
    second = control.post("/blackouts", json={"start_in": 100, "end_in": 200}).json()
    assert second["schedule"] == added["schedule"]  # one test blackout schedule, many spans
    assert control.delete("/blackouts").json()["schedules_removed"] == 1
    assert api.get(f"/api/now/table/cmn_schedule_span/{added['span']}").status_code == 404
    assert control.post("/blackouts", json={"start_in": 10, "end_in": 5}).status_code == 422
