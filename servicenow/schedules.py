"""Blackout and maintenance schedules (`cmn_schedule` + `cmn_schedule_span`) as time: when is a change allowed to run.

ServiceNow's model (markdown/it-service-management/change-management/t_CreateBlkoutMaintSched.md,
configuring-maintenance-schedules-best-practices.md; the entry fields in
markdown/platform-administration/time-configuration/r_ScheduleEntryFields.md): a *blackout* schedule's entries are
times when no change work may happen; a CI's *maintenance* schedule (`cmdb_ci.maintenance_schedule`) holds the only
times its changes may happen. A moment is allowed when no blackout entry that applies covers it and, where a
maintenance schedule applies, one of its entries does.

An entry (span) is read from the Table API's strings: `start_date_time` / `end_date_time` of its first occurrence,
`all_day`, `repeat_type` (empty: once; `daily`, `weekdays`, `weekends`, `weekly`, `monthly`, `yearly`),
`repeat_count` (every N days, weeks, months or years), `days_of_week` for weekly entries (digits, 1 = Monday),
`monthly_type` for monthly entries (t_RepeatAMonthlySchedule.md: the day of the month; the day of the week, i.e. the
first occurrence's weekday in the same order within each month - the instance's default "Day" method, the first
Monday stays the first Monday; the last day of the month; the first occurrence's weekday in the month's last week),
`yearly_type` / `float_week` / `float_day` for yearly entries (a fixed date, or a floating day such as the second
Monday of March), and `repeat_until` (a date, inclusive). An entry whose repetition this reading does not know is
not guessed at: a blackout that holds one blocks all the time (`Schedule.unreadable`), a maintenance schedule gains
no allowed time from it - a schedule that cannot be read never lets a change run where it should not. Times are UTC: the integration user's time zone is GMT, so the Table API writes
them as "YYYY-MM-DD hh:mm:ss" in UTC (schedule date-times stored as "YYYYMMDDThhmmss" are read too); a schedule's
own `time_zone` is not applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

Interval = tuple[datetime, datetime]

_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y%m%dT%H%M%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%Y%m%d")
_WEEKDAYS = frozenset({1, 2, 3, 4, 5})
_WEEKEND = frozenset({6, 7})


def servicenow_datetime(text: str | None) -> datetime | None:
    """A Table API date-time (UTC for a GMT integration user) as an aware datetime; None when empty or unreadable."""
    raw = (text or "").strip().removesuffix("Z")
    if not raw:
        return None
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    return None


def shown(moment: datetime) -> str:
    """A time as work notes print it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Entry:
    """One schedule entry: its first occurrence and how it repeats."""

    first: Interval
    repeat: str  # "" | daily | weekly | monthly | yearly
    every: int
    weekdays: frozenset[int]  # weekly: the ISO weekdays an occurrence starts on
    until: date | None
    # monthly: dom | dow | last_day | last_week; yearly: date | float (then `nth` 1-5 or -1 for last, `weekday`)
    kind: str = ""
    nth: int = 0
    weekday: int = 0

    @classmethod
    def parse(cls, span: Mapping[str, str]) -> Entry | None:
        """The entry, or None when it has no readable times. Raises Unreadable for a repetition not known here."""
        start = servicenow_datetime(span.get("start_date_time"))
        end = servicenow_datetime(span.get("end_date_time"))
        if start is None or end is None:
            return None
        if span.get("all_day") == "true":  # whole days: from the first day's midnight to the midnight after the last
            start = datetime.combine(start.date(), datetime.min.time(), UTC)
            end = datetime.combine(end.date(), datetime.min.time(), UTC) + timedelta(days=1)
        if end <= start:
            return None
        repeat = span.get("repeat_type") or ""
        weekdays: frozenset[int] = frozenset()
        if repeat == "weekdays":
            repeat, weekdays = "weekly", _WEEKDAYS
        elif repeat == "weekends":
            repeat, weekdays = "weekly", _WEEKEND
        elif repeat == "weekly":
            named = {int(c) for c in span.get("days_of_week") or "" if c in "1234567"}
            weekdays = frozenset(named or {start.isoweekday()})
        elif repeat not in ("", "daily", "monthly", "yearly"):
            raise Unreadable(f"repeats '{repeat}'")
        count = span.get("repeat_count") or "1"
        every = int(count) if count.isdigit() and int(count) > 0 else 1
        until = servicenow_datetime(span.get("repeat_until"))
        kind, nth, weekday = "", 0, start.isoweekday()
        if repeat == "monthly":
            kind = _MONTHLY.get(span.get("monthly_type") or "", "")
            if not kind:
                raise Unreadable(f"monthly type '{span.get('monthly_type')}'")
            nth = (start.day - 1) // 7 + 1
        elif repeat == "yearly":
            kind = _YEARLY.get(span.get("yearly_type") or "", "")
            if not kind:
                raise Unreadable(f"yearly type '{span.get('yearly_type')}'")
            if kind == "float":
                week, day = (span.get("float_week") or "").lower(), span.get("float_day") or ""
                nth = -1 if week in ("last", "-1") else int(week) if week.isdigit() else 0
                weekday = int(day) if day.isdigit() and 1 <= int(day) <= 7 else 0
                if not (nth == -1 or 1 <= nth <= 5) or not weekday:
                    raise Unreadable(f"floating week '{week}' day '{day}'")
        return cls((start, end), repeat, every, weekdays, until.date() if until else None, kind, nth, weekday)

    def _starts_on(self, day: date) -> bool:
        first = self.first[0].date()
        if day < first or (self.until is not None and day > self.until):
            return False
        if self.repeat == "daily":
            return (day - first).days % self.every == 0
        if self.repeat == "weekly":
            weeks = ((day - timedelta(days=day.weekday())) - (first - timedelta(days=first.weekday()))).days // 7
            return day.isoweekday() in self.weekdays and weeks % self.every == 0
        if self.repeat == "monthly":
            months = (day.year - first.year) * 12 + day.month - first.month
            return months % self.every == 0 and self._monthly_day(day)
        if self.repeat == "yearly":
            if (day.year - first.year) % self.every or day.month != first.month:
                return False
            if self.kind == "float":
                return day.isoweekday() == self.weekday and _nth_weekday(day, self.nth)
            return day.day == first.day
        return day == first

    def _monthly_day(self, day: date) -> bool:
        first = self.first[0].date()
        if self.kind == "dom":
            return day.day == first.day
        if self.kind == "last_day":
            return (day + timedelta(days=1)).month != day.month
        if day.isoweekday() != first.isoweekday():
            return False
        if self.kind == "last_week":
            return _nth_weekday(day, -1)
        # dow: the same order in the month; a month without a fifth such weekday repeats on its last one.
        return _nth_weekday(day, self.nth) or (self.nth == 5 and _nth_weekday(day, -1))

    def occurrences(self, since: datetime, until: datetime) -> Iterator[Interval]:
        """Every occurrence that overlaps [since, until), in order."""
        length = self.first[1] - self.first[0]
        day = max(self.first[0].date(), (since - length).date())
        while day <= until.date():
            if self._starts_on(day):
                start = datetime.combine(day, self.first[0].timetz())
                if start < until and start + length > since:
                    yield start, start + length
            if not self.repeat:
                return
            day += timedelta(days=1)


def _nth_weekday(day: date, nth: int) -> bool:
    """`day` is the nth of its weekday in its month (-1: the last)."""
    if nth == -1:
        return (day + timedelta(days=7)).month != day.month
    return (day.day - 1) // 7 + 1 == nth


class Unreadable(ValueError):
    """A schedule entry repeats in a way this reading does not know."""


# Choice values of cmn_schedule_span.monthly_type / yearly_type as the Table API returns them (and their labels).
_MONTHLY = {
    "": "dom",
    "dom": "dom",
    "day_of_month": "dom",
    "dow": "dow",
    "day_of_week": "dow",
    "last_day": "last_day",
    "last_day_of_month": "last_day",
    "last_week": "last_week",
    "last_week_of_month": "last_week",
}
_YEARLY = {"": "date", "doy": "date", "day_of_year": "date", "float": "float", "floating": "float"}


@dataclass(frozen=True)
class Schedule:
    name: str
    entries: tuple[Entry, ...]
    unreadable: tuple[str, ...] = ()  # why each entry not read was not (see the module's docstring)

    @classmethod
    def of(cls, name: str, spans: Iterable[Mapping[str, str]]) -> Schedule:
        entries: list[Entry] = []
        unreadable: list[str] = []
        for span in spans:
            try:
                entry = Entry.parse(span)
            except Unreadable as why:
                unreadable.append(str(why))
                continue
            if entry is not None:
                entries.append(entry)
        return cls(name, tuple(entries), tuple(unreadable))

    def intervals(self, since: datetime, until: datetime) -> list[Interval]:
        return sorted(i for e in self.entries for i in e.occurrences(since, until))

    def covering(self, moment: datetime) -> Interval | None:
        """The occurrence that covers `moment` (the longest-lasting of them), or None."""
        found = [i for i in self.intervals(moment, moment + timedelta(seconds=1)) if i[0] <= moment < i[1]]
        return max(found, key=lambda i: i[1]) if found else None


@dataclass(frozen=True)
class Allowed:
    """When a change may run: `at` the moment asked about, `blocked_by` why not ('' when it may), and the next
    moment it may (`next`; None when no allowed moment remains before the horizon)."""

    at: datetime
    blocked_by: str
    next: datetime | None


def allowed(
    at: datetime, horizon: datetime, blackouts: Iterable[Schedule], maintenance: Schedule | None = None
) -> Allowed:
    """Whether a change may run at `at`, and else the first moment before `horizon` when it may."""
    blackouts = list(blackouts)
    for schedule in blackouts:
        if schedule.unreadable:  # fail closed: a blackout changeloop cannot read blocks every moment
            why = f"blackout '{schedule.name}' has an entry changeloop cannot read ({'; '.join(schedule.unreadable)})"
            return Allowed(at, f"{why}: fix the entry or run the change with `window: ignore`", None)

    def reason(moment: datetime) -> str:
        for schedule in blackouts:
            occurrence = schedule.covering(moment)
            if occurrence is not None:
                return f"blackout '{schedule.name}' until {shown(occurrence[1])}"
        if maintenance is not None and maintenance.covering(moment) is None:
            return f"outside the maintenance window '{maintenance.name}'"
        return ""

    why = reason(at)
    if not why:
        return Allowed(at, "", at)
    # Allowed moments form intervals that begin where a blackout occurrence ends or a maintenance occurrence begins.
    candidates = {end for s in blackouts for _, end in s.intervals(at, horizon)}
    if maintenance is not None:
        candidates |= {start for start, _ in maintenance.intervals(at, horizon)}
    for moment in sorted(c for c in candidates if at < c < horizon):
        if not reason(moment):
            return Allowed(at, why, moment)
    return Allowed(at, why, None)
