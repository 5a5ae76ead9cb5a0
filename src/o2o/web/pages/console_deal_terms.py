"""团购详情 in the console deal form: the contents table (菜品/项目, quantity, unit price in yuan)
and the rules inputs, turned into ``o2o.catalog.deal_terms`` data (and back for editing).

Rows work without JavaScript: the form shows the existing items plus blank rows; blank rows are
ignored. Errors sit next to the row or the rule input they are about."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError
from starlette.datastructures import FormData

from o2o.catalog.deal_terms import MAX_ITEMS, DealItem, DealRules
from o2o.money import parse_yuan
from o2o.schemas import LongText, Schema, ShortText
from o2o.web.forms import Form, chinese_message, fen_to_input
from o2o.weekly import ALL_WEEKDAYS, WEEKDAY_NAMES, Weekday

BLANK_ROWS = 3
WEEKDAY_OPTIONS = [(d, WEEKDAY_NAMES[d]) for d in ALL_WEEKDAYS]
BOOKING_OPTIONS = [("none", "无需预约"), ("advance", "需提前预约")]
People = Annotated[int, Field(ge=1, le=100)]


class DealTermsFields(Schema):
    """Inputs of the deal form about its contents and rules (mixed into DealForm)."""

    usable_days: Annotated[list[Weekday], Field(max_length=7)] = []
    hours_start_1: str = ""
    hours_end_1: str = ""
    hours_start_2: str = ""
    hours_end_2: str = ""
    excluded_dates: LongText = ""
    booking: Literal["none", "advance"] = "none"
    booking_note: ShortText = ""
    people_min: People | None = None
    people_max: People | None = None
    combinable: bool = False
    extra_charges: LongText = ""
    # Where errors about the contents table as a whole are shown.
    items: ShortText = ""


TERMS_MESSAGES = {
    "usable_days": "请选择可用日",
    "people_min": "适用人数为 1–100 的整数",
    "people_max": "适用人数为 1–100 的整数",
}


@dataclass
class ItemRow:
    name: str = ""
    quantity: str = ""
    price: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    item: DealItem | None = None

    @property
    def blank(self) -> bool:
        return not (self.name or self.quantity or self.price)


def read_item_rows(data: FormData) -> list[ItemRow]:
    names, qtys = data.getlist("item_name"), data.getlist("item_qty")
    prices = data.getlist("item_price")

    def at(values: Sequence[Any], i: int) -> str:
        value = values[i] if i < len(values) else ""
        return value.strip() if isinstance(value, str) else ""

    count = min(len(names), MAX_ITEMS + BLANK_ROWS)
    return [ItemRow(at(names, i), at(qtys, i), at(prices, i)) for i in range(count)]


def check_item_rows(rows: list[ItemRow], form: Form[Any]) -> list[DealItem]:
    items: list[DealItem] = []
    for row in rows:
        if row.blank:
            continue
        if not row.name:
            row.errors["name"] = "请填写菜品/项目名称"
        qty = int(row.quantity) if row.quantity.isascii() and row.quantity.isdigit() else 0
        if not 1 <= qty <= 999:
            row.errors["quantity"] = "数量为 1–999 的整数"
        try:
            price = parse_yuan(row.price or "")
        except ValueError:
            price = -1
            row.errors["price"] = "请填写单价，如 38.00"
        if not row.errors:
            try:
                row.item = DealItem(name=row.name, quantity=qty, unit_price_fen=price)
                items.append(row.item)
            except ValidationError as exc:
                row.errors["name"] = chinese_message(exc.errors()[0])
    if len(items) > MAX_ITEMS:
        form.fail(f"套餐内容最多 {MAX_ITEMS} 项", field="items")
    if any(r.errors for r in rows):
        form.fail("请修改标出的套餐内容", field="items")
    return items


def item_rows_of(items: list[dict[str, Any]]) -> list[ItemRow]:
    rows = [
        ItemRow(i["name"], str(i["quantity"]), fen_to_input(i["unit_price_fen"])) for i in items
    ]
    return rows + [ItemRow() for _ in range(BLANK_ROWS)]


_DATE_SPLIT = re.compile(r"[\s,，、;；]+")


def rules_from_form(form: Form[Any]) -> DealRules | None:
    """The rules typed in the form; errors go next to their inputs."""
    d = form.data
    if d is None:
        return None
    if not d.usable_days:
        form.fail("请至少选择一个可用日", field="usable_days")
    hours = []
    for n in (1, 2):
        start, end = getattr(d, f"hours_start_{n}"), getattr(d, f"hours_end_{n}")
        if start or end:
            if not (start and end):
                form.fail("请同时填写开始和结束时间", field=f"hours_end_{n}")
            hours.append({"start": start, "end": end})
    dates: list[date] = []
    for word in _DATE_SPLIT.split(d.excluded_dates.strip()):
        if not word:
            continue
        try:
            dates.append(date.fromisoformat(word))
        except ValueError:
            form.fail(f"「{word}」不是日期，请写成 2026-10-01", field="excluded_dates")
    charges = [c.strip() for c in d.extra_charges.splitlines() if c.strip()]
    if form.errors or form.error:
        return None
    try:
        return DealRules(
            weekdays=d.usable_days,
            hours=hours,
            excluded_dates=dates,
            booking=d.booking,
            booking_note=d.booking_note,
            people_min=d.people_min,
            people_max=d.people_max,
            combinable=d.combinable,
            extra_charges=charges,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        target = {
            "hours": "hours_end_1",
            "extra_charges": "extra_charges",
            "excluded_dates": "excluded_dates",
        }.get(loc[0] if loc else "", "people_max")
        message = "适用人数上限不能小于下限" if target == "people_max" else chinese_message(err)
        if loc and loc[0] == "hours":
            message = "时间请写成 11:00 这样的 24 小时制"
        form.fail(message, field=target)
        return None


def rules_values(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Form values of stored rules (a deal without rules: every day, no booking)."""
    if not raw:
        return {"usable_days": ALL_WEEKDAYS, "booking": "none"}
    rules = DealRules.model_validate(raw)
    values: dict[str, Any] = {
        "usable_days": rules.weekdays,
        "excluded_dates": "\n".join(x.isoformat() for x in rules.excluded_dates),
        "booking": rules.booking,
        "booking_note": rules.booking_note,
        "people_min": rules.people_min,
        "people_max": rules.people_max,
        "combinable": rules.combinable,
        "extra_charges": "\n".join(rules.extra_charges),
    }
    for n, r in enumerate(rules.hours[:2], start=1):
        values[f"hours_start_{n}"], values[f"hours_end_{n}"] = r.start, r.end
    return values
