"""servicenow/schedules.py: when a blackout or a maintenance schedule lets a change run, read from the entries'
Table API strings (markdown/platform-administration/time-configuration/r_ScheduleEntryFields.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from servicenow.query import Query
from servicenow.schedules import Schedule, allowed, servicenow_datetime


def at(text: str) -> datetime:
    moment = servicenow_datetime(text)
    assert moment is not None
    return moment


# 2024-01-01 is a Monday.
WEEKDAY_FREEZE = Schedule.of(
    "Business hours freeze",
    [
        {
            "start_date_time": "2024-01-01 08:00:00",
            "end_date_time": "2024-01-01 18:00:00",
            "repeat_type": "weekly",
            "days_of_week": "12345",
        }
    ],
)
NIGHTLY = Schedule.of(
    "Nightly window",
    [{"start_date_time": "2024-01-01 02:00:00", "end_date_time": "2024-01-01 04:00:00", "repeat_type": "daily"}],
)


def test_dates_are_read_in_utc_in_both_formats() -> None:
    assert servicenow_datetime("2025-06-02 10:14:03") == datetime(2025, 6, 2, 10, 14, 3, tzinfo=UTC)
    assert servicenow_datetime("20250602T101403") == datetime(2025, 6, 2, 10, 14, 3, tzinfo=UTC)
    assert servicenow_datetime("") is None and servicenow_datetime("soon") is None


def test_a_weekday_blackout_blocks_until_its_end_and_not_on_saturdays() -> None:
    wednesday_noon = at("2025-06-04 12:00:00")
    found = allowed(wednesday_noon, at("2025-06-10 00:00:00"), [WEEKDAY_FREEZE])
    assert found.blocked_by == "blackout 'Business hours freeze' until 2025-06-04 18:00:00 UTC"
    assert found.next == at("2025-06-04 18:00:00")
    saturday_noon = at("2025-06-07 12:00:00")
    assert allowed(saturday_noon, at("2025-06-10 00:00:00"), [WEEKDAY_FREEZE]).blocked_by == ""


def test_no_allowed_time_before_the_horizon_answers_none() -> None:
    found = allowed(at("2025-06-04 12:00:00"), at("2025-06-04 17:00:00"), [WEEKDAY_FREEZE])
    assert found.blocked_by and found.next is None


def test_a_maintenance_window_allows_only_inside_it_and_a_blackout_inside_it_still_blocks() -> None:
    found = allowed(at("2025-06-04 12:00:00"), at("2025-06-06 00:00:00"), [], NIGHTLY)
    assert found.blocked_by == "outside the maintenance window 'Nightly window'"
    assert found.next == at("2025-06-05 02:00:00")
    assert allowed(at("2025-06-05 03:00:00"), at("2025-06-06 00:00:00"), [], NIGHTLY).blocked_by == ""
    early_freeze = Schedule.of(
        "Early freeze", [{"start_date_time": "2025-06-05 01:00:00", "end_date_time": "2025-06-05 03:00:00"}]
    )
    found = allowed(at("2025-06-04 12:00:00"), at("2025-06-06 00:00:00"), [early_freeze], NIGHTLY)
    assert found.next == at("2025-06-05 03:00:00"), "inside the window, after the freeze"


def test_repeat_every_other_week_until_a_date() -> None:
    fortnightly = Schedule.of(
        "Fortnightly",
        [
            {
                "start_date_time": "2025-06-02 00:00:00",
                "end_date_time": "2025-06-02 06:00:00",
                "repeat_type": "weekly",
                "repeat_count": "2",
                "days_of_week": "1",
                "repeat_until": "2025-06-30",
            }
        ],
    )
    assert fortnightly.covering(at("2025-06-16 01:00:00")) is not None
    assert fortnightly.covering(at("2025-06-09 01:00:00")) is None, "the week in between"
    assert fortnightly.covering(at("2025-07-14 01:00:00")) is None, "after repeat_until"


def test_a_stored_condition_is_anded_into_every_group() -> None:
    query = Query().eq("sys_id", "abc").and_stored("name=legacy-batch^ORname=wiki^NQsys_class_name=x^ORDERBYname")
    assert query.encode() == "sys_id=abc^name=legacy-batch^ORname=wiki^NQsys_id=abc^sys_class_name=x"
