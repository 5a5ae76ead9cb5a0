"""Structured opening hours of a store: per weekday up to three ranges (a range may run past
midnight), and dates the store is closed (holidays). From them: 营业中 / 即将打烊 / 已打烊 at
any moment, and the one-line summary kept in ``Store.opening_hours``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from pydantic import Field

from o2o.schemas import Schema
from o2o.timeutil import to_china
from o2o.weekly import WEEKDAY_NAMES, TimeRange, matching_range, ranges_text, weekdays_text

MAX_RANGES = 3
CLOSING_SOON = timedelta(minutes=60)
OPEN, CLOSING, CLOSED = "open", "closing_soon", "closed"
STATE_LABELS = {OPEN: "营业中", CLOSING: "即将打烊", CLOSED: "已打烊"}

DayRanges = Annotated[list[TimeRange], Field(max_length=MAX_RANGES)]


class StoreHours(Schema):
    # Monday first; an empty day is closed.
    weekly: Annotated[list[DayRanges], Field(min_length=7, max_length=7)]
    closed_dates: Annotated[list[date], Field(max_length=100)] = []


@dataclass(frozen=True)
class OpenState:
    state: str
    label: str
    detail: str  # e.g. "22:00 打烊"


def load(raw: dict[str, Any] | None) -> StoreHours | None:
    return StoreHours.model_validate(raw) if raw else None


def dump(hours: StoreHours | dict[str, Any] | None) -> dict[str, Any] | None:
    if hours is None:
        return None
    return StoreHours.model_validate(hours).model_dump(mode="json")


def _ranges_of(hours: StoreHours) -> Any:
    def ranges_of(day: date) -> list[TimeRange]:
        if day in hours.closed_dates:
            return []
        return hours.weekly[day.isoweekday() - 1]

    return ranges_of


def open_state(hours: StoreHours | None, moment: datetime) -> OpenState | None:
    """None when the store has no structured hours (nothing can be said)."""
    if hours is None:
        return None
    now = to_china(moment)
    ranges_of = _ranges_of(hours)
    found = matching_range(ranges_of, now)
    if found is None:
        return OpenState(CLOSED, STATE_LABELS[CLOSED], "")
    _range, ends_at = found
    # Open round the clock across midnight: the next day's first range starts as this one ends.
    following = matching_range(ranges_of, ends_at)
    if following is not None:
        ends_at = following[1]
    if ends_at - now <= CLOSING_SOON:
        return OpenState(CLOSING, STATE_LABELS[CLOSING], f"{ends_at.strftime('%H:%M')} 打烊")
    return OpenState(OPEN, STATE_LABELS[OPEN], f"{ends_at.strftime('%H:%M')} 打烊")


def summary(hours: StoreHours | None, limit: int = 100) -> str:
    """周一至周五 10:00–22:00；周六、周日 10:00–次日02:00 (consecutive equal days grouped)."""
    if hours is None:
        return ""
    groups: list[tuple[list[int], str]] = []
    for index, ranges in enumerate(hours.weekly):
        text = ranges_text(ranges) if ranges else "休息"
        if groups and groups[-1][1] == text:
            groups[-1][0].append(index + 1)
        else:
            groups.append(([index + 1], text))
    if len(groups) == 1:
        return ("每天 " + groups[0][1])[:limit]
    return "；".join(f"{weekdays_text(days)} {text}" for days, text in groups)[:limit]


def week_rows(hours: StoreHours | None) -> list[tuple[str, str]]:
    """(周一, 10:00–22:00) per weekday, for the store page."""
    if hours is None:
        return []
    return [
        (WEEKDAY_NAMES[i + 1], ranges_text(r) if r else "休息") for i, r in enumerate(hours.weekly)
    ]
