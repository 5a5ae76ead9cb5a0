"""Consumer H5 购物车: goods SKUs and deals from several merchants, kept in the signed page
session (no table: a cart is small and per browser; it survives signing in), checked out as one
checkout through ``orders.checkout`` — one order per merchant and kind, one payment, the shipping
address when goods are in it.

The listing page's buy form posts here: 加入购物车 adds to the cart, 立即购买 is answered with a
redirect to the direct checkout (/checkout), which stays as it was.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi.responses import RedirectResponse, Response
from pydantic import Field

from o2o.catalog import service as catalog
from o2o.catalog.models import GOODS
from o2o.errors import AppError, ValidationFailed
from o2o.orders import service as orders
from o2o.schemas import Id, Name, Phone, Schema
from o2o.web.context import PageContext, PageDep, SignedInPageDep, page_router
from o2o.web.forms import FORM_ERRORS, Form, FormDataDep
from o2o.web.nav import NavItem, add_nav
from o2o.web.pages.consumer_shop import (
    ADDRESS_FIELDS,
    ADDRESS_LABELS,
    KIND_LABELS,
    _address_prefill,
    _go_pay,
    checkout_once,
    render_listing,
)

router = page_router()

add_nav(NavItem("consumer", "购物车", "/cart", order=40, icon="🛒"))

SESSION_KEY = "cart"
# The cart lives in the session cookie (4 KB at most): a few dozen lines is plenty.
MAX_CART_LINES = 20
MAX_QUANTITY = orders.MAX_LINE_QUANTITY
QUANTITY_MESSAGE = f"数量需为 1–{MAX_QUANTITY} 的整数"
KeyField = Annotated[str, Field(pattern=r"^[0-9]{1,19}-[0-9]{1,19}-[0-9]{1,19}$", max_length=60)]


# --- the cart in the session -------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    listing_id: int
    sku_id: int | None
    slot_id: int | None
    quantity: int

    @property
    def key(self) -> str:
        return f"{self.listing_id}-{self.sku_id or 0}-{self.slot_id or 0}"

    def item(self) -> orders.CartItem:
        return orders.CartItem(self.listing_id, self.quantity, self.sku_id, self.slot_id)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def read_cart(page: PageContext) -> list[Entry]:
    """The session's cart; anything malformed in it is dropped (the cookie is ours, but old)."""
    raw = page.session.get(SESSION_KEY)
    entries: list[Entry] = []
    if not isinstance(raw, list):
        return entries
    for row in raw[:MAX_CART_LINES]:
        if not isinstance(row, list) or len(row) != 4:
            continue
        listing_id, quantity = _int(row[0]), _int(row[3])
        if listing_id is None or quantity is None or quantity > MAX_QUANTITY:
            continue
        entries.append(Entry(listing_id, _int(row[1]), _int(row[2]), quantity))
    return entries


def write_cart(page: PageContext, entries: list[Entry]) -> None:
    if entries:
        page.session[SESSION_KEY] = [
            [e.listing_id, e.sku_id, e.slot_id, e.quantity] for e in entries
        ]
    else:
        page.session.pop(SESSION_KEY, None)


# --- what the cart shows -----------------------------------------------------------------------


@dataclass
class Line:
    entry: Entry
    item: catalog.Purchasable | None
    problem: str | None = None

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def amount_fen(self) -> int:
        return self.item.unit_price_fen * self.entry.quantity if self.item else 0


@dataclass
class Group:
    """One future order: a merchant's goods, or its deals."""

    merchant_name: str
    kind: str
    lines: list[Line] = field(default_factory=list)

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def items_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)

    @property
    def shipping_fen(self) -> int:
        # As checkout charges it: one fee per goods order, the highest of its listings'.
        if self.kind != GOODS:
            return 0
        return max((line.item.shipping_fee_fen for line in self.lines if line.item), default=0)

    @property
    def subtotal_fen(self) -> int:
        return self.items_fen + self.shipping_fen


@dataclass
class CartView:
    groups: list[Group]
    broken: list[Line]

    @property
    def total_fen(self) -> int:
        return sum(g.subtotal_fen for g in self.groups)

    @property
    def has_goods(self) -> bool:
        return any(g.kind == GOODS for g in self.groups)

    @property
    def count(self) -> int:
        return sum(len(g.lines) for g in self.groups) + len(self.broken)

    @property
    def slot_times(self) -> dict[str, datetime]:
        return {
            line.key: line.item.slot_starts_at
            for g in self.groups
            for line in g.lines
            if line.item and line.item.slot_starts_at
        }


def cart_view(page: PageContext, entries: list[Entry]) -> CartView:
    """Each line resolved by the catalogue now (price, on sale); lines that cannot be bought
    any more are listed apart with the reason, and stay out of the totals."""
    groups: dict[tuple[int, str], Group] = {}
    broken: list[Line] = []
    with page.read() as session:
        for entry in entries:
            try:
                catalog.visible_listing(session, entry.listing_id, page.actor)
                item = catalog.resolve_purchase(
                    session, entry.listing_id, sku_id=entry.sku_id, slot_id=entry.slot_id
                )
            except AppError as exc:
                broken.append(Line(entry, None, exc.detail))
                continue
            group = groups.setdefault(
                (item.merchant_id, item.kind), Group(item.merchant_name, item.kind)
            )
            group.lines.append(Line(entry, item))
    return CartView(list(groups.values()), broken)


def render_cart(
    page: PageContext,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    view = cart_view(page, read_cart(page))
    return page.render(
        "consumer/cart.html",
        cart=view,
        errors=errors or {},
        values=values or {},
        max_quantity=MAX_QUANTITY,
        status_code=status_code,
    )


# --- adding from the listing page --------------------------------------------------------------


class AddForm(Schema):
    listing_id: Id
    sku_id: Id | None = None
    slot_id: Id | None = None
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)] = 1
    action: Literal["cart", "buy"] = "cart"


ADD_MESSAGES = {"quantity": QUANTITY_MESSAGE, "sku_id": "请选择规格", "slot_id": "请选择场次"}


@router.post("/cart/add", name="consumer_cart_add")
def add_to_cart(page: PageDep, data: FormDataDep) -> Response:
    form = Form.parse(AddForm, data, messages=ADD_MESSAGES)
    raw = data.get("listing_id")
    if not (
        isinstance(raw, str)
        and raw.isascii()
        and raw.isdigit()
        and 0 < len(raw) < 19
        and int(raw) > 0
    ):
        raise ValidationFailed("商品参数无效", field="listing_id")
    listing_id = int(raw)
    if form.data is None:
        return render_listing(page, listing_id, form=form, status_code=422)
    body = form.data
    with page.read() as session:
        catalog.visible_listing(session, body.listing_id, page.actor)  # 404 for drafts
        try:
            catalog.resolve_purchase(
                session, body.listing_id, sku_id=body.sku_id, slot_id=body.slot_id
            )
        except AppError as exc:
            # A SKU or slot of another listing, sold out, closed: said next to the form.
            form.apply_error(exc)
            return render_listing(page, listing_id, form=form, status_code=exc.status)
    if body.action == "buy":
        params = {"listing_id": body.listing_id, "quantity": body.quantity}
        if body.sku_id:
            params["sku_id"] = body.sku_id
        if body.slot_id:
            params["slot_id"] = body.slot_id
        return RedirectResponse("/checkout?" + urlencode(params), status_code=303)
    entries = read_cart(page)
    added = Entry(body.listing_id, body.sku_id, body.slot_id, body.quantity)
    for index, entry in enumerate(entries):
        if entry.key == added.key:
            quantity = entry.quantity + body.quantity
            if quantity > MAX_QUANTITY:
                form.fail(f"购物车中已有 {entry.quantity} 件，最多 {MAX_QUANTITY} 件", "quantity")
                return render_listing(page, listing_id, form=form, status_code=422)
            entries[index] = Entry(entry.listing_id, entry.sku_id, entry.slot_id, quantity)
            break
    else:
        if len(entries) >= MAX_CART_LINES:
            form.fail(f"购物车最多放 {MAX_CART_LINES} 种商品，请先结算或删除一些")
            return render_listing(page, listing_id, form=form, status_code=422)
        entries.append(added)
    write_cart(page, entries)
    return page.redirect(f"/l/{listing_id}", flash="已加入购物车")


# --- the cart page -----------------------------------------------------------------------------


@router.get("/cart", name="consumer_cart")
def cart_page(page: PageDep) -> Response:
    return render_cart(page)


class QuantityForm(Schema):
    key: KeyField
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


class RemoveForm(Schema):
    key: KeyField


@router.post("/cart/update", name="consumer_cart_update")
def update_quantity(page: PageDep, data: FormDataDep) -> Response:
    form = Form.parse(QuantityForm, data, messages={"quantity": QUANTITY_MESSAGE})
    raw_key = data.get("key")
    key = raw_key if isinstance(raw_key, str) else ""
    entries = read_cart(page)
    if key not in {e.key for e in entries} or "key" in form.errors:
        return page.redirect("/cart", flash="该商品已不在购物车中", kind="error")
    if form.data is None:
        raw = data.get("quantity")
        return render_cart(
            page,
            errors={key: form.errors.get("quantity", QUANTITY_MESSAGE)},
            values={key: raw if isinstance(raw, str) else ""},
            status_code=422,
        )
    quantity = form.data.quantity
    write_cart(
        page,
        [
            Entry(e.listing_id, e.sku_id, e.slot_id, quantity) if e.key == key else e
            for e in entries
        ],
    )
    return page.redirect("/cart", flash="数量已更新")


@router.post("/cart/remove", name="consumer_cart_remove")
def remove_line(page: PageDep, data: FormDataDep) -> Response:
    form = Form.parse(RemoveForm, data)
    entries = read_cart(page)
    if form.data is not None:
        write_cart(page, [e for e in entries if e.key != form.data.key])
    return page.redirect("/cart", flash="已从购物车删除")


# --- checking out the whole cart ---------------------------------------------------------------


class CartCheckoutForm(Schema):
    idempotency_key: Annotated[str, Field(min_length=8, max_length=64)] | None = None
    name: Name | None = None
    phone: Phone | None = None
    province: Annotated[str, Field(max_length=20)] | None = None
    city: Annotated[str, Field(max_length=30)] | None = None
    district: Annotated[str, Field(max_length=30)] | None = None
    detail: Annotated[str, Field(max_length=200)] | None = None


def _render_cart_checkout(
    page: PageContext, form: Form[CartCheckoutForm], view: CartView
) -> Response:
    return page.render(
        "consumer/cart_checkout.html",
        form=form,
        cart=view,
        address_labels=ADDRESS_LABELS,
        status_code=form.status,
    )


def _ready(page: PageContext) -> tuple[list[Entry], CartView] | Response:
    entries = read_cart(page)
    if not entries:
        return page.redirect("/cart", flash="购物车是空的", kind="error")
    view = cart_view(page, entries)
    if view.broken:
        return page.redirect("/cart", flash="购物车中有无法购买的商品，请先删除", kind="error")
    return entries, view


@router.get("/cart/checkout", name="consumer_cart_checkout")
def cart_checkout_page(page: SignedInPageDep) -> Response:
    ready = _ready(page)
    if isinstance(ready, Response):
        return ready
    _entries, view = ready
    form = Form.blank(
        CartCheckoutForm,
        idempotency_key=secrets.token_urlsafe(18),
        **(_address_prefill(page) if view.has_goods else {}),
    )
    return _render_cart_checkout(page, form, view)


@router.post("/cart/checkout", name="consumer_cart_checkout_submit")
def cart_checkout_submit(page: SignedInPageDep, data: FormDataDep) -> Response:
    ready = _ready(page)
    if isinstance(ready, Response):
        return ready
    entries, view = ready
    form = Form.parse(CartCheckoutForm, data)
    if form.data is None:
        return _render_cart_checkout(page, form, view)
    body = form.data
    address = None
    if view.has_goods:
        address = {k: getattr(body, k) for k in ADDRESS_FIELDS}
        for k, v in address.items():
            if not v:
                form.fail("此项必填", field=k)
        if not form.ok:
            return _render_cart_checkout(page, form, view)
    try:
        result = checkout_once(page, [e.item() for e in entries], address, body.idempotency_key)
    except FORM_ERRORS as exc:
        form.apply_error(exc)
        return _render_cart_checkout(page, form, view)
    write_cart(page, [])
    return _go_pay(page, result["payment"]["payment_no"], result["orders"][0]["order_no"])
