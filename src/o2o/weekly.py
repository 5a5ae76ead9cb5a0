"""Weekly time ranges in China time, shared by a deal's usable hours and a store's opening hours.

A range is ``start``–``end`` as "HH:MM" text; an end at or before the start runs past midnight
(18:00–02:00 is open until 2 a.m. the next day, and belongs to the day it starts on); "24:00"
is the end of the day. Weekdays are ISO numbers: 1 = Monday … 7 = Sunday.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import Field, model_validator

from o2o.schemas import Schema

WEEKDAY_NAMES = {1: "周一", 2: "周二", 3: "周三", 4: "周四", 5: "周五", 6: "周六", 7: "周日"}
ALL_WEEKDAYS = [1, 2, 3, 4, 5, 6, 7]
Weekday = Annotated[int, Field(ge=1, le=7)]
ClockText = Annotated[
    str,
    Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", description='"HH:MM", China time'),
]
DAY = 24 * 60


def minutes(text: str) -> int:
    hours, mins = text.split(":")
    return int(hours) * 60 + int(mins)


def clock(total: int) -> str:
    return f"{total // 60:02d}:{total % 60:02d}"


class TimeRange(Schema):
    start: ClockText
    end: ClockText

    @model_validator(mode="after")
    def _not_empty(self) -> TimeRange:
        if self.start == "24:00":
            raise ValueError("开始时间不能是 24:00")
        return self

    @property
    def span(self) -> tuple[int, int]:
        """(start, end) in minutes from the start of the day; end > start (may pass 1440)."""
        start, end = minutes(self.start), minutes(self.end)
        return start, end if end > start else end + DAY

    @property
    def overnight(self) -> bool:
        return self.span[1] > DAY

    @property
    def text(self) -> str:
        end = self.end if not self.overnight else f"次日{self.end}"
        return f"{self.start}–{end}"


def ranges_text(ranges: Iterable[TimeRange]) -> str:
    return "、".join(r.text for r in ranges)


def weekdays_text(days: Sequence[int]) -> str:
    chosen = sorted(set(days))
    if chosen == ALL_WEEKDAYS:
        return "每天"
    if len(chosen) >= 3 and chosen == list(range(chosen[0], chosen[-1] + 1)):
        return f"{WEEKDAY_NAMES[chosen[0]]}至{WEEKDAY_NAMES[chosen[-1]]}"
    return "、".join(WEEKDAY_NAMES[d] for d in chosen)


def matching_range(
    ranges_of_day: Callable[[date], Sequence[TimeRange]], moment: datetime
) -> tuple[TimeRange, datetime] | None:
    """The range covering ``moment`` (a China-time datetime) and when it ends, or None.

    ``ranges_of_day(d)`` gives the ranges that *start* on day ``d`` (empty when that day is
    excluded or closed); yesterday's overnight ranges are looked at too."""
    today = moment.date()
    now_min = moment.hour * 60 + moment.minute
    for day, offset in ((today, 0), (today - timedelta(days=1), DAY)):
        for r in ranges_of_day(day):
            start, end = r.span
            if start <= now_min + offset < end:
                midnight = datetime.combine(day, datetime.min.time(), moment.tzinfo)
                return r, midnight + timedelta(minutes=end)
    return None
