"""商品 in the console: the merchant's listings (status, kind, price, stock, sales), create and
edit goods (with SKU rows) and deals (团购: stores, validity, refund rules, booking), publish and
unpublish, audited SKU stock adjustments. Owners and managers only, like the API; everything goes
through ``o2o.catalog.service`` (and the inventory it uses), never over HTTP.

Prices are typed in yuan ("12.50") and converted to integer fen exactly (``forms.yuan_input``).
SKU rows are added and removed by the server (the 添加规格 / 删除 buttons re-render the form
with what was typed), so the form works without JavaScript and under the strict CSP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from o2o.catalog import service as catalog
from o2o.catalog.models import GOODS, SERVICE, Listing
from o2o.catalog.schemas import (
    MAX_PRICE_FEN,
    MAX_SHIPPING_FEN,
    MAX_SKUS,
    GoodsListingIn,
    Reason,
    ServiceListingIn,
    SkuIn,
    Stock,
    ValidDays,
)
from o2o.errors import AppError, NotFound, ValidationFailed
from o2o.inventory import service as inventory
from o2o.inventory.service import MAX_UNITS
from o2o.merchants import service as merchants
from o2o.merchants.access import MANAGERS
from o2o.money import parse_yuan
from o2o.schemas import Id, LongText, Name, Quantity, Schema
from o2o.timeutil import CHINA_TZ, to_china, utcnow
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep, fen_to_input, id_or_none, yuan_input
from o2o.web.nav import NavItem, add_nav
from o2o.web.pages import console_deal_terms as terms
from o2o.web.pages.console import category_options
from o2o.web.pages.console_deal_terms import DealTermsFields

router = page_router()

add_nav(NavItem("console", "商品", "/console/m/{merchant_id}/listings", order=20, roles=MANAGERS))

T = TypeVar("T")
PAGE_SIZE = 50
KINDS = {GOODS: "商品", SERVICE: "团购"}
STATUSES = [(s, catalog.LISTING_STATUS.label(s)) for s in ("draft", "published", "unpublished")]
STOCK_REASON = "控制台修改库存"

PriceYuan = Annotated[int, yuan_input(min_fen=1, max_fen=MAX_PRICE_FEN)]
ShippingYuan = Annotated[int, yuan_input(min_fen=0, max_fen=MAX_SHIPPING_FEN)]


class GoodsForm(Schema):
    title: Name
    description: LongText = ""
    category_id: Id
    shipping_fee: ShippingYuan = 0


class DealForm(DealTermsFields):
    title: Name
    description: LongText = ""
    category_id: Id
    price: PriceYuan
    original_price: PriceYuan
    store_ids: Annotated[list[Id], Field(min_length=1, max_length=200)]
    validity: Literal["days", "until"] = "days"
    valid_days: ValidDays | None = None
    valid_until: date | None = None
    unlimited: bool = False
    stock: Stock | None = None
    per_user_limit: Quantity | None = None
    refund_anytime: bool = False
    auto_refund_on_expiry: bool = False
    requires_slot: bool = False


class StockForm(Schema):
    delta: Annotated[int, Field(ge=-MAX_UNITS, le=MAX_UNITS)]
    reason: Reason


LISTING_MESSAGES = {
    "title": "请填写 1–100 个字的标题",
    "category_id": "请选择类目",
    "store_ids": "请至少选择一个适用门店",
    "valid_days": "有效天数为 1–3650 的整数",
    "stock": "库存为 0 或正整数",
    "per_user_limit": "每人限购为 1–10000 的整数，不限请留空",
    **terms.TERMS_MESSAGES,
}
STOCK_MESSAGES = {"delta": "请输入非零整数，如 10 或 -5", "reason": "请填写调整原因"}
# The service names API fields (fen); the page's inputs are in yuan.
SERVICE_FIELDS = {
    "price_fen": "price",
    "original_price_fen": "original_price",
    "shipping_fee_fen": "shipping_fee",
}


# --- helpers ----------------------------------------------------------------------------------


def require_managers(page: PageContext) -> tuple[Any, int]:
    """(actor, merchant id) for an owner or manager (clerks: 403, as in the API)."""
    assert page.actor is not None and page.merchant is not None
    page.actor.require_staff(page.merchant.id, MANAGERS)
    return page.actor, page.merchant.id


def own_listing(session: Session, page: PageContext, listing_id: int) -> Listing:
    """The listing if it is this merchant's; another merchant's looks absent (404)."""
    assert page.merchant is not None
    listing = session.get(Listing, listing_id)
    if listing is None or listing.merchant_id != page.merchant.id:
        raise NotFound("商品不存在", code="listing_not_found")
    return listing


def _renamed(action: Callable[[Session, Any], T]) -> Callable[[Session, Any], T]:
    """Run a service call; its field errors are renamed to the page's input names."""

    def run(session: Session, data: Any) -> T:
        try:
            return action(session, data)
        except ValidationFailed as exc:
            for err in exc.extra.get("errors") or []:
                name = str(err.get("field") or "")
                err["field"] = SERVICE_FIELDS.get(name, name)
            raise

    return run


def _end_of_day(day: date) -> datetime:
    """A date typed as 截止日期 means the end of that day in China."""
    return datetime.combine(day, time(23, 59, 59), CHINA_TZ)


def _stores(session: Session, merchant_id: int) -> list[tuple[int, str]]:
    return [
        (s.id, s.name if s.is_active else f"{s.name}（已停用）")
        for s in merchants.list_stores(session, merchant_id)
    ]


# --- list -------------------------------------------------------------------------------------


@dataclass
class Row:
    listing: Listing
    stock: str
    price_note: str


def _stock_text(listing: Listing, levels: Mapping[int, inventory.Levels]) -> str:
    if listing.kind == GOODS:
        active = [s for s in listing.skus if s.is_active]
        total = sum(levels[s.inventory_item_id].available for s in active)
        return f"{total}（{len(active)} 个在售规格）"
    if listing.requires_slot:
        base = "按场次"
        if listing.inventory_item_id is not None:
            base += f"，套餐剩余 {levels[listing.inventory_item_id].available}"
        return base
    if listing.inventory_item_id is None:
        return "不限"
    return str(levels[listing.inventory_item_id].available)


@router.get("/console/m/{merchant_id}/listings", name="console_listings")
def listing_list(
    page: ConsolePageDep,
    status: Annotated[str, Query(max_length=40)] = "",
    kind: Annotated[str, Query(max_length=40)] = "",
    after: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    actor, merchant_id = require_managers(page)
    chosen_status = status if status in dict(STATUSES) else ""
    chosen_kind = kind if kind in KINDS else ""
    after_id = id_or_none(after)
    with page.read() as session:
        found = catalog.list_merchant_listings(
            session,
            actor,
            merchant_id,
            status=chosen_status or None,
            kind=chosen_kind or None,
            limit=PAGE_SIZE + 1,
            after_id=after_id,
        )
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        item_ids = [s.inventory_item_id for x in found for s in x.skus] + [
            x.inventory_item_id for x in found if x.inventory_item_id is not None
        ]
        levels = inventory.levels_by_item(session, item_ids)
        rows = [
            Row(x, _stock_text(x, levels), "起" if x.kind == GOODS and len(x.skus) > 1 else "")
            for x in found
        ]
    return page.render(
        "console/listings.html",
        rows=rows,
        status=chosen_status,
        kind=chosen_kind,
        statuses=STATUSES,
        kinds=list(KINDS.items()),
        status_label=catalog.LISTING_STATUS.label,
        next_after=found[-1].id if more and found else None,
    )


# --- goods ------------------------------------------------------------------------------------


@dataclass
class SkuRow:
    """One SKU row of the goods form as typed (existing SKUs carry their id)."""

    id: int | None = None
    name: str = ""
    price: str = ""
    stock: str = ""
    active: bool = True
    available: int | None = None  # existing SKUs: what can still be sold
    price_fen: int | None = None
    stock_units: int | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def blank(self) -> bool:
        return self.id is None and not (self.name or self.price or self.stock)


def _read_sku_rows(data: FormData) -> list[SkuRow]:
    ids, names = data.getlist("sku_id"), data.getlist("sku_name")
    prices, stocks = data.getlist("sku_price"), data.getlist("sku_stock")
    active = {str(v) for v in data.getlist("sku_active")}
    count = min(max(len(names), len(ids)), MAX_SKUS + 1)

    def at(values: Sequence[Any], i: int) -> str:
        value = values[i] if i < len(values) else ""
        return value.strip() if isinstance(value, str) else ""

    rows = []
    for i in range(count):
        raw_id = at(ids, i)
        rows.append(
            SkuRow(
                id=id_or_none(raw_id),
                name=at(names, i),
                price=at(prices, i),
                stock=at(stocks, i),
                # New rows are on sale; existing ones have a 在售 checkbox.
                active=str(i) in active if raw_id else True,
            )
        )
    return rows


def _check_sku_rows(rows: list[SkuRow], form: Form[Any]) -> None:
    """Each row's name, price (yuan → fen) and, for new rows, stock; errors next to the row."""
    if len(rows) > MAX_SKUS:
        form.fail(f"每个商品最多 {MAX_SKUS} 个规格", field="skus")
    for row in rows:
        if row.blank:
            continue
        if not row.name:
            row.errors["name"] = "请填写规格名称"
        elif len(row.name) > 60:
            row.errors["name"] = "不能超过 60 个字符"
        try:
            row.price_fen = parse_yuan(row.price)
            if not 1 <= row.price_fen <= MAX_PRICE_FEN:
                raise ValueError("价格为 ¥0.01–¥1000000.00")
        except ValueError as exc:
            row.errors["price"] = "请填写价格，如 12.50" if not row.price else str(exc)
        if row.id is None:
            if (
                row.stock.isascii()
                and row.stock.isdigit()
                and len(row.stock) <= 9
                and int(row.stock) <= MAX_UNITS
            ):
                row.stock_units = int(row.stock)
            else:
                row.errors["stock"] = "库存为 0 或正整数"
    if any(row.errors for row in rows):
        form.fail("请修改标出的规格", field="skus")
    elif not any(not row.blank and row.active for row in rows):
        form.fail("至少需要一个在售规格", field="skus")


def _render_goods(
    page: PageContext,
    form: Form[Any],
    rows: list[SkuRow],
    listing: Listing | None = None,
    stock_forms: Mapping[int, Form[Any]] | None = None,
) -> Response:
    assert page.merchant is not None and page.actor is not None
    with page.read() as session:
        categories = category_options(session)
        history = (
            catalog.list_adjustments(session, page.actor, listing.id, limit=10)
            if listing is not None
            else []
        )
    status = max([form.status, *(f.status for f in (stock_forms or {}).values())])
    return page.render(
        "console/listing_goods.html",
        form=form,
        rows=rows,
        listing=listing,
        categories=categories,
        stock_forms=stock_forms or {},
        history=history,
        sku_names={r.id: r.name for r in rows if r.id is not None},
        status_label=catalog.LISTING_STATUS.label,
        status_code=status,
    )


def _button(data: FormData, rows: list[SkuRow]) -> bool:
    """添加规格 / 删除 (a new row): change the rows, save nothing. True when one was pressed."""
    if data.get("add_sku"):
        if len(rows) < MAX_SKUS:
            rows.append(SkuRow())
        return True
    remove = data.get("remove_sku")
    if isinstance(remove, str) and remove.isascii() and remove.isdigit() and len(remove) < 4:
        i = int(remove)
        if i < len(rows) and rows[i].id is None:
            del rows[i]
        if not rows:
            rows.append(SkuRow())
        return True
    return False


@router.get("/console/m/{merchant_id}/listings/new/goods", name="console_listing_new_goods")
def new_goods(page: ConsolePageDep) -> Response:
    require_managers(page)
    assert page.merchant is not None
    merchants.require_approved(page.merchant)
    return _render_goods(page, Form.blank(GoodsForm, shipping_fee="0.00"), [SkuRow(), SkuRow()])


@router.post("/console/m/{merchant_id}/listings/new/goods")
def create_goods(page: ConsolePageDep, data: FormDataDep) -> Response:
    actor, merchant_id = require_managers(page)
    rows = _read_sku_rows(data)
    form = Form.parse(GoodsForm, data, messages=LISTING_MESSAGES)
    if _button(data, rows):
        form.errors.clear()
        form.error = None
        form.status = 200
        return _render_goods(page, form, rows)
    _check_sku_rows(rows, form)

    def create(session: Session, d: GoodsForm) -> int:
        body = GoodsListingIn(
            kind="goods",
            title=d.title,
            description=d.description,
            category_id=d.category_id,
            shipping_fee_fen=d.shipping_fee,
            skus=[
                SkuIn(name=r.name, price_fen=r.price_fen or 0, stock=r.stock_units or 0)
                for r in rows
                if not r.blank and r.active
            ],
        )
        return catalog.create_listing(session, actor, merchant_id, body).id

    listing_id = form.submit(page.db, _renamed(create))
    if listing_id is None:
        return _render_goods(page, form, rows)
    return page.redirect(
        f"/console/m/{merchant_id}/listings/{listing_id}/edit",
        flash="商品已创建（草稿），确认无误后请上架",
    )


def _goods_rows(session: Session, listing: Listing) -> list[SkuRow]:
    levels = inventory.levels_by_item(session, [s.inventory_item_id for s in listing.skus])
    return [
        SkuRow(
            id=s.id,
            name=s.name,
            price=fen_to_input(s.price_fen),
            active=s.is_active,
            available=levels[s.inventory_item_id].available,
        )
        for s in listing.skus
    ]


def _edit_goods_page(
    page: PageContext, listing_id: int, stock_forms: Mapping[int, Form[Any]] | None = None
) -> Response:
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
        rows = _goods_rows(session, listing)
    form = Form.blank(
        GoodsForm,
        title=listing.title,
        description=listing.description,
        category_id=listing.category_id,
        shipping_fee=fen_to_input(listing.shipping_fee_fen),
    )
    return _render_goods(page, form, rows, listing, stock_forms)


def _save_goods(page: PageContext, listing: Listing, data: FormData) -> Response:
    actor, merchant_id = require_managers(page)
    rows = _read_sku_rows(data)
    with page.read() as session:
        current = {r.id: r for r in _goods_rows(session, own_listing(session, page, listing.id))}
    for row in rows:  # what cannot be typed: the stock shown next to an existing SKU
        if row.id in current:
            row.available = current[row.id].available
    form = Form.parse(GoodsForm, data, messages=LISTING_MESSAGES)
    if _button(data, rows):
        form.errors.clear()
        form.error = None
        form.status = 200
        return _render_goods(page, form, rows, listing)
    _check_sku_rows(rows, form)

    def save(session: Session, d: GoodsForm) -> int:
        changes = {
            "title": d.title,
            "description": d.description,
            "category_id": d.category_id,
            "shipping_fee_fen": d.shipping_fee,
        }
        catalog.update_listing(session, actor, listing.id, changes)
        # New rows first, so switching an old SKU off never leaves none on sale in between.
        for r in rows:
            if r.id is None and not r.blank and r.active:
                body = SkuIn(name=r.name, price_fen=r.price_fen or 0, stock=r.stock_units or 0)
                catalog.add_sku(session, actor, listing.id, body)
        for r in rows:
            if r.id is None:
                continue
            was = current.get(r.id)
            if was is None:
                raise NotFound("规格不存在", code="sku_not_found")
            sku_changes: dict[str, Any] = {}
            if r.name != was.name:
                sku_changes["name"] = r.name
            if r.price_fen != parse_yuan(was.price):
                sku_changes["price_fen"] = r.price_fen
            if r.active != was.active:
                sku_changes["is_active"] = r.active
            if sku_changes:
                catalog.update_sku(session, actor, listing.id, r.id, sku_changes)
        return listing.id

    saved = form.submit(page.db, _renamed(save), field_by_code={"sku_not_found": "skus"})
    if saved is None:
        if form.error and not form.errors:
            form.errors["skus"] = form.error  # e.g. 已上架商品至少保留一个在售规格
        return _render_goods(page, form, rows, listing)
    return page.redirect(f"/console/m/{merchant_id}/listings/{listing.id}/edit", flash="已保存")


@router.post("/console/m/{merchant_id}/listings/{listing_id}/skus/{sku_id}/stock")
def adjust_sku_stock(
    page: ConsolePageDep, listing_id: Id, sku_id: Id, data: FormDataDep
) -> Response:
    """库存调整: add or remove units of one SKU through the audited stock-adjust service."""
    actor, merchant_id = require_managers(page)
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
    form = Form.parse(StockForm, data, messages=STOCK_MESSAGES)
    if form.ok and form.data is not None and form.data.delta == 0:
        form.fail("调整数量不能为 0", field="delta")
    result = form.submit(
        page.db,
        lambda s, d: catalog.adjust_stock(
            s, actor, listing.id, delta=d.delta, reason=d.reason, sku_id=sku_id
        ),
        field_by_code={"stock_adjust_below_zero": "delta", "sku_not_found": "delta"},
    )
    if result is None:
        return _edit_goods_page(page, listing.id, {sku_id: form})
    levels = result["levels"]
    return page.redirect(
        f"/console/m/{merchant_id}/listings/{listing.id}/edit",
        flash=f"库存已调整，当前可售 {levels['available']}",
    )


# --- deals ------------------------------------------------------------------------------------


def _check_deal(form: Form[DealForm]) -> None:
    """What spans fields, with the message on the field to change."""
    d = form.data
    if d is None:
        return
    if d.original_price < d.price:
        form.fail("原价不能低于售价", field="original_price")
    if d.validity == "days" and d.valid_days is None:
        form.fail("请填写购买后有效天数", field="valid_days")
    if d.validity == "until" and d.valid_until is None:
        form.fail("请选择截止日期", field="valid_until")
    if d.validity == "until" and d.valid_until and _end_of_day(d.valid_until) <= utcnow():
        form.fail("截止日期不能早于今天", field="valid_until")
    if not d.unlimited and d.stock is None:
        form.fail("请填写库存，或勾选「不限库存」", field="stock")


def _render_deal(
    page: PageContext,
    form: Form[Any],
    listing: Listing | None = None,
    item_rows: list[terms.ItemRow] | None = None,
) -> Response:
    assert page.merchant is not None
    if item_rows is None:
        item_rows = terms.item_rows_of(listing.deal_items if listing else [])
    with page.read() as session:
        categories = category_options(session)
        stores = _stores(session, page.merchant.id)
    return page.render(
        "console/listing_deal.html",
        form=form,
        listing=listing,
        item_rows=item_rows,
        weekday_options=terms.WEEKDAY_OPTIONS,
        booking_options=terms.BOOKING_OPTIONS,
        categories=categories,
        stores=stores,
        status_label=catalog.LISTING_STATUS.label,
        status_code=form.status,
    )


@router.get("/console/m/{merchant_id}/listings/new/deal", name="console_listing_new_deal")
def new_deal(page: ConsolePageDep) -> Response:
    require_managers(page)
    assert page.merchant is not None
    merchants.require_approved(page.merchant)
    form = Form.blank(
        DealForm,
        validity="days",
        valid_days="30",
        unlimited=True,
        refund_anytime=True,
        auto_refund_on_expiry=True,
        **terms.rules_values(None),
    )
    return _render_deal(page, form)


@dataclass
class ParsedDeal:
    form: Form[DealForm]
    rows: list[terms.ItemRow]
    items: list[Any] | None
    rules: Any
    given: bool = True


def _parse_deal(data: FormData) -> ParsedDeal:
    form = Form.parse(DealForm, data, messages=LISTING_MESSAGES)
    _check_deal(form)
    if not data.get("terms_form"):  # a post without the 团购详情 inputs leaves them as they are
        return ParsedDeal(form, [], None, None, given=False)
    rows = terms.read_item_rows(data)
    items = terms.check_item_rows(rows, form)
    rules = terms.rules_from_form(form)
    return ParsedDeal(form, rows, items, rules)


@router.post("/console/m/{merchant_id}/listings/new/deal")
def create_deal(page: ConsolePageDep, data: FormDataDep) -> Response:
    actor, merchant_id = require_managers(page)
    parsed = _parse_deal(data)
    form = parsed.form

    def create(session: Session, d: DealForm) -> int:
        body = ServiceListingIn(
            kind="service",
            title=d.title,
            description=d.description,
            category_id=d.category_id,
            price_fen=d.price,
            original_price_fen=d.original_price,
            store_ids=d.store_ids,
            valid_days=d.valid_days if d.validity == "days" else None,
            valid_until=_end_of_day(d.valid_until)
            if d.validity == "until" and d.valid_until
            else None,
            stock=None if d.unlimited else d.stock,
            per_user_limit=d.per_user_limit,
            refund_anytime=d.refund_anytime,
            auto_refund_on_expiry=d.auto_refund_on_expiry,
            requires_slot=d.requires_slot,
            items=parsed.items or [],
            rules=parsed.rules,
        )
        return catalog.create_listing(session, actor, merchant_id, body).id

    listing_id = form.submit(page.db, _renamed(create))
    if listing_id is None:
        return _render_deal(page, form, item_rows=parsed.rows or None)
    flash = "团购已创建（草稿）"
    if form.data is not None and form.data.requires_slot:
        flash += "，请先在场次日历中创建可预约场次"
        return page.redirect(f"/console/m/{merchant_id}/listings/{listing_id}/slots", flash=flash)
    return page.redirect(f"/console/m/{merchant_id}/listings/{listing_id}/edit", flash=flash)


def _deal_values(session: Session, listing: Listing) -> dict[str, Any]:
    available = (
        inventory.levels(session, listing.inventory_item_id).available
        if listing.inventory_item_id is not None
        else None
    )
    return {
        "title": listing.title,
        "description": listing.description,
        "category_id": listing.category_id,
        "price": fen_to_input(listing.price_fen),
        "original_price": fen_to_input(listing.original_price_fen),
        "store_ids": listing.store_ids,
        "validity": "until" if listing.valid_until is not None else "days",
        "valid_days": listing.valid_days,
        "valid_until": to_china(listing.valid_until).date().isoformat()
        if listing.valid_until
        else None,
        "unlimited": available is None,
        "stock": available,
        "per_user_limit": listing.per_user_limit,
        "refund_anytime": listing.refund_anytime,
        "auto_refund_on_expiry": listing.auto_refund_on_expiry,
        "requires_slot": listing.requires_slot,
        **terms.rules_values(listing.deal_rules),
    }


def _save_deal(page: PageContext, listing: Listing, data: FormData) -> Response:
    actor, merchant_id = require_managers(page)
    parsed = _parse_deal(data)
    form = parsed.form
    with page.read() as session:
        was = _deal_values(session, own_listing(session, page, listing.id))

    def save(session: Session, d: DealForm) -> int:
        changes: dict[str, Any] = {
            "title": d.title,
            "description": d.description,
            "category_id": d.category_id,
            "price_fen": d.price,
            "original_price_fen": d.original_price,
            "store_ids": d.store_ids,
            "per_user_limit": d.per_user_limit,
            "refund_anytime": d.refund_anytime,
            "auto_refund_on_expiry": d.auto_refund_on_expiry,
            "requires_slot": d.requires_slot,
        }
        if parsed.given:
            changes.update(items=parsed.items, rules=parsed.rules)
        until = d.valid_until.isoformat() if d.valid_until else None
        if d.validity == "days" and (
            was["validity"] != "days" or was["valid_days"] != d.valid_days
        ):
            changes.update(valid_days=d.valid_days, valid_until=None)
        if d.validity == "until" and (was["validity"] != "until" or was["valid_until"] != until):
            assert d.valid_until is not None
            changes.update(valid_days=None, valid_until=_end_of_day(d.valid_until))
        # Stock changes are audited (inventory adjustments with who and why).
        if d.unlimited and not was["unlimited"]:
            changes.update(stock=None, stock_reason=STOCK_REASON)
        elif not d.unlimited and (was["unlimited"] or d.stock != was["stock"]):
            changes.update(stock=d.stock, stock_reason=STOCK_REASON)
        catalog.update_listing(session, actor, listing.id, changes)
        return listing.id

    saved = form.submit(page.db, _renamed(save))
    if saved is None:
        return _render_deal(page, form, listing, parsed.rows or None)
    return page.redirect(f"/console/m/{merchant_id}/listings/{listing.id}/edit", flash="已保存")


# --- edit (either kind), publish, unpublish ---------------------------------------------------


@router.get("/console/m/{merchant_id}/listings/{listing_id}/edit", name="console_listing_edit")
def edit_listing(page: ConsolePageDep, listing_id: Id) -> Response:
    require_managers(page)
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
        values = _deal_values(session, listing) if listing.kind == SERVICE else None
    if values is None:
        return _edit_goods_page(page, listing.id)
    return _render_deal(page, Form.blank(DealForm, **values), listing)


@router.post("/console/m/{merchant_id}/listings/{listing_id}/edit")
def save_listing(page: ConsolePageDep, listing_id: Id, data: FormDataDep) -> Response:
    require_managers(page)
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
    if listing.kind == GOODS:
        return _save_goods(page, listing, data)
    return _save_deal(page, listing, data)


def _move(page: PageContext, listing_id: int, action: str, data: FormData) -> Response:
    actor, merchant_id = require_managers(page)
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
    back = data.get("next")
    base = f"/console/m/{merchant_id}/listings"
    target = back if isinstance(back, str) and back.startswith(base) else base
    move = catalog.publish if action == "publish" else catalog.unpublish
    try:
        with page.write() as session:
            move(session, actor, listing.id)
    except AppError as exc:
        if exc.status not in (409, 422):
            raise
        return page.redirect(
            target, flash=f"「{listing.title}」未能{_VERBS[action]}：{exc.detail}", kind="error"
        )
    return page.redirect(target, flash=f"「{listing.title}」已{_VERBS[action]}")


_VERBS = {"publish": "上架", "unpublish": "下架"}


@router.post("/console/m/{merchant_id}/listings/{listing_id}/publish")
def publish(page: ConsolePageDep, listing_id: Id, data: FormDataDep) -> Response:
    return _move(page, listing_id, "publish", data)


@router.post("/console/m/{merchant_id}/listings/{listing_id}/unpublish")
def unpublish(page: ConsolePageDep, listing_id: Id, data: FormDataDep) -> Response:
    return _move(page, listing_id, "unpublish", data)
