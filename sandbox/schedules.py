"""Schedule entries (`cmn_schedule_span`) as time intervals: when does a span occur, does a window meet it.

The documented subset the sandbox evaluates (markdown/platform-administration/time-configuration/
r_ScheduleEntryFields.md): `start_date_time` / `end_date_time` of the first occurrence, `repeat_type` empty
(does not repeat), `daily`, `weekdays`, `weekends` or `weekly`, `repeat_count` (repeat every N days or weeks),
`days_of_week` for weekly entries (digits, 1 = Monday ... 7 = Sunday; empty = the first occurrence's day) and
`repeat_until` (a date, inclusive; empty = forever). Monthly and yearly entries are read as not repeating.

Every time is UTC: date-times are written "YYYY-MM-DD hh:mm:ss" (the instance's internal format, which is also
what the Table API reads and writes for a GMT integration user); the schedule's `time_zone` is not applied.
"YYYYMMDDThhmmss" (the schedule date-time storage format) is read too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

Record = dict[str, str]
Interval = tuple[datetime, datetime]

_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y%m%dT%H%M%S", "%Y-%m-%d")


def parse_time(text: str) -> datetime | None:
    value = (text or "").strip().removesuffix("Z")
    for fmt in _FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    days: frozenset[int]  # ISO weekdays an occurrence may start on; empty = any (daily) / none (no repeat)
    every: int  # repeat every N days (daily) or N weeks (weekly)
    repeat: str  # "", "daily", "weekly"
    until: date | None

    @classmethod
    def of(cls, record: Record) -> Span | None:
        start, end = parse_time(record.get("start_date_time", "")), parse_time(record.get("end_date_time", ""))
        if start is None or end is None or end <= start:
            return None
        repeat = record.get("repeat_type", "") or ""
        days: frozenset[int] = frozenset()
        if repeat == "weekdays":
            repeat, days = "weekly", frozenset(range(1, 6))
        elif repeat == "weekends":
            repeat, days = "weekly", frozenset((6, 7))
        elif repeat == "weekly":
            days = frozenset(int(d) for d in record.get("days_of_week", "") if d in "1234567") or frozenset(
                {start.isoweekday()}
            )
        elif repeat != "daily":
            repeat = ""
        try:
            every = max(1, int(record.get("repeat_count") or 1))
        except ValueError:
            every = 1
        until = parse_time(record.get("repeat_until", ""))
        return cls(start, end, days, every, repeat, until.date() if until else None)

    def occurrences(self, window_start: datetime, window_end: datetime) -> Iterator[Interval]:
        """Each occurrence overlapping [window_start, window_end), in order."""
        length = self.end - self.start
        if not self.repeat:
            if self.start < window_end and self.end > window_start:
                yield self.start, self.end
            return
        first = max(self.start.date(), (window_start - length).date())
        last = window_end.date() if self.until is None else min(window_end.date(), self.until)
        day = first
        while day <= last:
            if self._repeats_on(day):
                start = datetime.combine(day, self.start.timetz())
                if start < window_end and start + length > window_start:
                    yield start, start + length
            day += timedelta(days=1)

    def _repeats_on(self, day: date) -> bool:
        if day < self.start.date():
            return False
        if self.repeat == "daily":
            return (day - self.start.date()).days % self.every == 0
        weeks = (
            (day - timedelta(days=day.weekday())) - (self.start.date() - timedelta(days=self.start.weekday()))
        ).days
        return day.isoweekday() in self.days and (weeks // 7) % self.every == 0


def overlapping(spans: Iterable[Record], window: Interval) -> list[Interval]:
    """The occurrences of `spans` that overlap the window."""
    found: list[Interval] = []
    for record in spans:
        span = Span.of(record)
        if span is not None:
            found.extend(span.occurrences(*window))
    return sorted(found)


def covers(spans: Iterable[Record], window: Interval) -> bool:
    """True when the occurrences of `spans`, joined, cover the whole window (a maintenance window allows it)."""
    reached = window[0]
    for start, end in overlapping(spans, window):
        if start > reached:
            return False
        reached = max(reached, end)
        if reached >= window[1]:
            return True
    return reached >= window[1]
