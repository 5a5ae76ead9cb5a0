"""Structured opening hours: 营业中 / 即将打烊 / 已打烊 at any moment (overnight ranges, holiday
closures, round the clock), the summary kept as the store's one-line hours, and the API."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from o2o.merchants.hours import StoreHours, open_state, summary, week_rows
from o2o.timeutil import CHINA_TZ

MONDAY = date(2026, 12, 7)


def at(day: date, hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=CHINA_TZ)


def r(start: str, end: str) -> dict[str, str]:
    return {"start": start, "end": end}


BAR = StoreHours.model_validate(
    {
        # Mon–Thu lunch and dinner, Fri–Sat into the night, Sunday closed.
        "weekly": [[r("11:00", "14:00"), r("17:00", "22:00")]] * 4
        + [[r("18:00", "02:00")]] * 2
        + [[]],
        "closed_dates": ["2026-12-08"],
    }
)


@pytest.mark.parametrize(
    ("day_offset", "hhmm", "label", "detail"),
    [
        (0, "10:59", "已打烊", ""),
        (0, "11:00", "营业中", "14:00 打烊"),
        (0, "13:00", "即将打烊", "14:00 打烊"),
        (0, "15:00", "已打烊", ""),
        (0, "20:30", "营业中", "22:00 打烊"),
        (1, "12:00", "已打烊", ""),  # a holiday closure
        (4, "23:30", "营业中", "02:00 打烊"),  # Friday night
        (5, "01:30", "即将打烊", "02:00 打烊"),  # after midnight, still Friday's range
        (5, "02:00", "已打烊", ""),
        (6, "01:00", "即将打烊", "02:00 打烊"),  # Saturday's range runs into Sunday
        (6, "12:00", "已打烊", ""),  # Sunday: closed
    ],
)
def test_open_state(day_offset: int, hhmm: str, label: str, detail: str) -> None:
    state = open_state(BAR, at(MONDAY + timedelta(days=day_offset), hhmm))
    assert state is not None
    assert (state.label, state.detail) == (label, detail)


def test_round_the_clock_is_never_about_to_close() -> None:
    always = StoreHours.model_validate({"weekly": [[r("00:00", "24:00")]] * 7})
    state = open_state(always, at(MONDAY, "23:30"))
    assert state is not None and state.label == "营业中"
    assert summary(always) == "每天 00:00–24:00"
    assert open_state(None, at(MONDAY, "12:00")) is None


def test_summary_and_week_rows() -> None:
    assert summary(BAR) == (
        "周一至周四 11:00–14:00、17:00–22:00；周五、周六 18:00–次日02:00；周日 休息"
    )
    assert week_rows(BAR)[6] == ("周日", "休息")


@pytest.mark.parametrize(
    "bad",
    [
        {"weekly": [[]] * 6},
        {"weekly": [[r("9:00", "18:00")]] * 7},
        {"weekly": [[r("10:00", "11:00")] * 4] * 7},
        {"weekly": [[]] * 7, "closed_dates": ["2026-02-30"]},
    ],
)
def test_bad_hours_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StoreHours.model_validate(bad)


def test_store_hours_through_the_api(api: Any, world: Any) -> None:
    url = f"/api/v1/merchants/{world.a.id}/stores/{world.a.store_ids[0]}"
    body = {"hours": BAR.model_dump(mode="json")}
    r = api.patch(url, json=body, as_=world.tokens["manager"])
    assert r.status_code == 200, r.text
    assert r.json()["hours"]["weekly"][4] == [r_ for r_ in [{"start": "18:00", "end": "02:00"}]]
    assert r.json()["opening_hours"].startswith("周一至周四 11:00–14:00")
    bad = {"hours": {"weekly": [[{"start": "25:00", "end": "26:00"}]] * 7}}
    assert api.patch(url, json=bad, as_=world.tokens["manager"]).status_code == 422
    assert api.patch(url, json=body, as_=world.tokens["clerk"]).status_code == 403
    r = api.patch(url, json={"hours": None}, as_=world.tokens["manager"])
    assert r.status_code == 200 and r.json()["hours"] is None
