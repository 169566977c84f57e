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


def _monthly(monthly_type: str, start: str = "20121105T100000", end: str = "20121105T110000") -> Schedule:
    span = {"start_date_time": start, "end_date_time": end, "repeat_type": "monthly", "monthly_type": monthly_type}
    return Schedule.of(f"{monthly_type} freeze", [span])


def _blocks(schedule: Schedule, moment: str) -> bool:
    return bool(allowed(at(moment), at("2013-12-31 00:00:00"), [schedule]).blocked_by)


def test_a_monthly_day_of_the_week_entry_keeps_its_order_in_each_month() -> None:
    """t_RepeatAMonthlySchedule.md's example: from Monday 2012-11-05 (the first Monday), 'Day of the Week' repeats on
    December 3 and January 7, the first Mondays - not on the 5th (the day-of-month reading)."""
    freeze = _monthly("dow")
    for moment in ("2012-11-05 10:30:00", "2012-12-03 10:30:00", "2013-01-07 10:30:00"):
        assert _blocks(freeze, moment), moment
    for moment in ("2012-12-05 10:30:00", "2012-12-10 10:30:00", "2013-01-05 10:30:00"):
        assert not _blocks(freeze, moment), moment
    assert _blocks(_monthly("dom"), "2012-12-05 10:30:00") and not _blocks(_monthly("dom"), "2012-12-03 10:30:00")


def test_month_end_freezes_on_the_last_day_and_in_the_last_week() -> None:
    last_day = _monthly("last_day", "20121130T000000", "20121130T235959")
    assert _blocks(last_day, "2013-02-28 12:00:00") and _blocks(last_day, "2012-12-31 12:00:00")
    assert not _blocks(last_day, "2013-02-27 12:00:00")
    last_friday = _monthly("last_week", "20121130T180000", "20121130T200000")  # Friday 2012-11-30
    assert _blocks(last_friday, "2012-12-28 19:00:00") and _blocks(last_friday, "2013-01-25 19:00:00")
    assert not _blocks(last_friday, "2013-01-18 19:00:00")


def test_a_floating_yearly_entry_repeats_on_its_week_and_weekday() -> None:
    """Yearly type 'Floating': the second Monday of March (float_week 2, float_day 1)."""
    span = {
        "start_date_time": "2012-03-12 00:00:00",
        "end_date_time": "2012-03-12 23:59:59",
        "repeat_type": "yearly",
        "yearly_type": "float",
        "float_week": "2",
        "float_day": "1",
    }
    freeze = Schedule.of("Second Monday of March", [span])
    assert _blocks(freeze, "2013-03-11 12:00:00") and not _blocks(freeze, "2013-03-12 12:00:00")


def test_a_blackout_entry_that_cannot_be_read_blocks_instead_of_letting_the_change_run() -> None:
    odd = Schedule.of(
        "Quarter-end freeze",
        [
            {
                "start_date_time": "2024-03-29 00:00:00",
                "end_date_time": "2024-03-31 23:59:59",
                "repeat_type": "quarterly",
            }
        ],
    )
    verdict = allowed(at("2024-05-02 10:00:00"), at("2024-05-03 10:00:00"), [odd])
    assert "cannot read" in verdict.blocked_by and "repeats 'quarterly'" in verdict.blocked_by
    assert verdict.next is None
    maintenance = Schedule.of("Odd window", [{**odd_span(), "monthly_type": "nth_friday"}])
    assert (
        maintenance.entries == ()
        and allowed(at("2024-03-01 10:00:00"), at("2024-03-02 10:00:00"), [], maintenance).blocked_by
    )


def odd_span() -> dict[str, str]:
    return {"start_date_time": "2024-03-01 09:00:00", "end_date_time": "2024-03-01 17:00:00", "repeat_type": "monthly"}
