"""团购详情 as data: what a deal contains and the rules of using it.

Contents are items (菜品/项目, quantity, unit price): their total is shown beside the deal price
(the saving a buyer can check). Rules: the weekdays and hours it can be used, dates it cannot
(holidays), whether to book ahead, for how many people, whether it combines with other offers,
and extra charges (锅底另收 …) — the hidden terms consumers complain about, now stated up front.
Redemption refuses a voucher outside its usable days and hours (``usable_refusal``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, model_validator

from o2o.money import format_yuan
from o2o.schemas import Schema, ShortText, line
from o2o.weekly import (
    ALL_WEEKDAYS,
    WEEKDAY_NAMES,
    TimeRange,
    Weekday,
    matching_range,
    ranges_text,
    weekdays_text,
)

MAX_ITEMS = 30
ItemName = line(min_length=1, max_length=60)


class DealItem(Schema):
    name: ItemName
    quantity: Annotated[int, Strict(), Field(ge=1, le=999)]
    unit_price_fen: Annotated[int, Strict(), Field(ge=0, le=100_000_000)]


DealItems = Annotated[list[DealItem], Field(max_length=MAX_ITEMS)]


class DealRules(Schema):
    weekdays: Annotated[list[Weekday], Field(min_length=1, max_length=7)] = ALL_WEEKDAYS
    # Empty: at any hour of a usable day.
    hours: Annotated[list[TimeRange], Field(max_length=4)] = []
    excluded_dates: Annotated[list[date], Field(max_length=100)] = []
    booking: Literal["none", "advance"] = "none"
    booking_note: ShortText = ""
    people_min: Annotated[int, Strict(), Field(ge=1, le=100)] | None = None
    people_max: Annotated[int, Strict(), Field(ge=1, le=100)] | None = None
    combinable: bool = False
    extra_charges: Annotated[list[line(min_length=1, max_length=60)], Field(max_length=10)] = []

    @model_validator(mode="after")
    def _consistent(self) -> DealRules:
        self.weekdays = sorted(set(self.weekdays))
        self.excluded_dates = sorted(set(self.excluded_dates))
        if self.people_min and self.people_max and self.people_max < self.people_min:
            raise ValueError("适用人数上限不能小于下限")
        return self


def items_total(items: list[dict[str, Any]] | list[DealItem]) -> int:
    total = 0
    for item in items:
        data = item.model_dump() if isinstance(item, DealItem) else item
        total += data["quantity"] * data["unit_price_fen"]
    return total


def load_rules(raw: dict[str, Any] | None) -> DealRules | None:
    return DealRules.model_validate(raw) if raw else None


def people_text(rules: DealRules) -> str | None:
    low, high = rules.people_min, rules.people_max
    if low and high:
        return f"{low} 人" if low == high else f"{low}–{high} 人"
    if low:
        return f"{low} 人及以上"
    if high:
        return f"最多 {high} 人"
    return None


def rules_lines(rules: DealRules | None) -> list[tuple[str, str]]:
    """(label, text) rows for the listing page, the voucher and the clerk's preview."""
    if rules is None:
        return []
    rows = [("可用日期", weekdays_text(rules.weekdays))]
    rows.append(("可用时段", ranges_text(rules.hours) if rules.hours else "营业时间内可用"))
    if rules.excluded_dates:
        rows.append(("不可用日期", "、".join(d.isoformat() for d in rules.excluded_dates)))
    if rules.booking != "none":  # (无需预约 is the default the page already says)
        booking = "需提前预约"
        if rules.booking_note:
            booking += f"（{rules.booking_note}）"
        rows.append(("预约", booking))
    people = people_text(rules)
    if people:
        rows.append(("适用人数", people))
    rows.append(("优惠同享", "可与店内其他优惠同享" if rules.combinable else "不可与其他优惠同享"))
    rows.append(("额外收费", "；".join(rules.extra_charges) if rules.extra_charges else "无"))
    return rows


def items_out(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**item, "subtotal_fen": item["quantity"] * item["unit_price_fen"]} for item in items or []
    ]


def usable_refusal(rules: DealRules | None, moment: datetime) -> str | None:
    """Why a voucher of this deal cannot be used at ``moment`` (China time), or None."""
    if rules is None:
        return None

    def ranges_of(day: date) -> list[TimeRange]:
        if day in rules.excluded_dates or day.isoweekday() not in rules.weekdays:
            return []
        return rules.hours or [TimeRange(start="00:00", end="24:00")]

    if matching_range(ranges_of, moment) is not None:
        return None
    today = moment.date()
    if today in rules.excluded_dates:
        return f"该团购 {today.isoformat()} 不可用（商家设定的不可用日期）"
    if today.isoweekday() not in rules.weekdays:
        return (
            f"该团购仅限{weekdays_text(rules.weekdays)}使用，"
            f"今天是{WEEKDAY_NAMES[today.isoweekday()]}"
        )
    return f"该团购仅限 {ranges_text(rules.hours)} 使用，现在是 {moment.strftime('%H:%M')}"


def price_note(items: list[dict[str, Any]], price_fen: int) -> str | None:
    """「套餐内容合计 ¥x，团购价省 ¥y」 when the items add up to more than the price."""
    total = items_total(items)
    if not items or total <= 0:
        return None
    if total > price_fen:
        return f"单点合计 {format_yuan(total)}，团购价省 {format_yuan(total - price_fen)}"
    return f"单点合计 {format_yuan(total)}"
