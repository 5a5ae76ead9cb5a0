"""Consumer H5 shopping: search, listing page, buy now → checkout → sandbox cashier, 我的订单,
order detail with vouchers (big QR, grouped code, 随时退).

Every rule is the services': search (o2o.search.service), catalogue (visible_listing,
listing_detail, resolve_purchase), checkout/orders (o2o.orders.service), payments
(o2o.payments.service) and vouchers (o2o.fulfilment.vouchers).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from fastapi.responses import RedirectResponse, Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from o2o.catalog import lookups
from o2o.catalog import service as catalog
from o2o.catalog.models import GOODS
from o2o.channels.middleware import visitor_id as channel_visitor_id
from o2o.errors import AppError, ValidationFailed
from o2o.fulfilment import vouchers
from o2o.idempotency import run_once
from o2o.merchants import service as merchants
from o2o.orders import service as orders
from o2o.orders.models import PENDING_PAYMENT, Order
from o2o.payments import registry
from o2o.payments import service as payments
from o2o.payments.models import Payment
from o2o.reviews import service as reviews
from o2o.schemas import Id, Name, Phone, Schema
from o2o.search import service as search_service
from o2o.timeutil import utcnow
from o2o.web.consumer_words import VOUCHER_WORDS, amount_label, order_word
from o2o.web.context import PageContext, PageDep, SignedInPageDep, page_router
from o2o.web.forms import FORM_ERRORS, Form, FormDataDep
from o2o.web.nav import NavItem, SlotItem, add_nav, provide
from o2o.web.pages import consumer_fulfil as fulfil
from o2o.web.pages.consumer import current_location, districts, format_distance

router = page_router()

add_nav(NavItem("consumer", "搜索", "/search", order=20, icon="🔍"))
add_nav(NavItem("consumer", "订单", "/orders", order=50, icon="🧾"))

RADIUS_CHOICES = [(1_000, "1 km"), (3_000, "3 km"), (5_000, "5 km"), (10_000, "10 km")]
SORT_LABELS = {
    "relevance": "综合",
    "distance": "距离最近",
    "sales": "销量最高",
    "price": "价格最低",
    "rating": "评分最高",
}
KIND_LABELS = {"service": "团购", "goods": "商品"}
SEARCH_LIMIT = 20
OrderNoPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")]
CodePath = Annotated[str, Path(min_length=1, max_length=40)]


def map_link(lat: float, lng: float, name: str) -> str:
    """Amap's URI API (GCJ-02 like our stores): only a link, nothing is fetched."""
    from urllib.parse import quote

    return f"https://uri.amap.com/marker?position={lng},{lat}&name={quote(name)}"


def geo_link(lat: float, lng: float, name: str) -> str:
    """A ``geo:`` URI (RFC 5870): the phone offers its map apps to navigate there."""
    from urllib.parse import quote

    return f"geo:{lat:.6f},{lng:.6f}?q={lat:.6f},{lng:.6f}({quote(name)})"


def add_covers(session: Session, items: list[dict[str, Any]]) -> None:
    """Each search result gets its listing's cover photo (None without one) and, with a
    nearest store, whether that store is open now (营业中 / 即将打烊 / 已打烊)."""
    found = lookups.covers(session, [it["listing_id"] for it in items])
    nearest = [it["nearest_store"]["id"] for it in items if it.get("nearest_store")]
    states = merchants.open_states(session, nearest, utcnow())
    for it in items:
        it["cover"] = found.get(it["listing_id"])
        store = it.get("nearest_store")
        it["open_state"] = states.get(store["id"]) if store else None


def _location(page: PageContext) -> Any:
    with page.read() as session:
        options = districts(session)
    return current_location(page, options)


# --- search ------------------------------------------------------------------------------------


@router.get("/search", name="consumer_search")
def search_page(
    page: PageDep,
    q: Annotated[str, Query(max_length=200)] = "",
    kind: Annotated[Literal["", "service", "goods"], Query()] = "",
    # Strings: the filter form sends "" for 全部/不限.
    category: Annotated[str, Query(alias="category_id", pattern=r"^[0-9]{0,9}$")] = "",
    sort: Annotated[Literal["", "relevance", "distance", "sales", "price", "rating"], Query()] = "",
    radius: Annotated[str, Query(alias="radius_m", pattern=r"^[0-9]{0,6}$")] = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    category_id = int(category) if category else None
    radius_m = min(max(int(radius), 100), search_service.MAX_RADIUS_M) if radius else None
    location = _location(page)
    with page.read() as session:
        tree = merchants.category_tree(session)
    error = None
    result: dict[str, Any] = {"items": [], "next_cursor": None}
    try:
        with page.read() as session:
            result = search_service.search(
                session,
                q=q.strip() or None,
                lat=location.lat if location else None,
                lng=location.lng if location else None,
                radius_m=radius_m,
                kind=kind or None,
                category_id=category_id,
                sort=sort or None,
                limit=SEARCH_LIMIT,
                cursor=cursor,
            )
        with page.read() as session:
            add_covers(session, result["items"])
    except ValidationFailed as exc:
        error = exc.detail
    params = {"q": q, "kind": kind, "category_id": category_id or "", "sort": sort}
    params["radius_m"] = radius_m or ""
    return page.render(
        "consumer/search.html",
        q=q,
        kind=kind,
        category_id=category_id,
        sort=sort,
        radius_m=radius_m,
        location=location,
        categories=_flat(tree),
        items=result["items"],
        next_cursor=result["next_cursor"],
        params=params,
        error=error,
        sort_labels=SORT_LABELS,
        kind_labels=KIND_LABELS,
        radius_choices=RADIUS_CHOICES,
        format_distance=format_distance,
    )


def _flat(nodes: list[dict[str, Any]], depth: int = 0) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in nodes:
        out.append((node["id"], "　" * depth + node["name"]))
        out.extend(_flat(node.get("children") or [], depth + 1))
    return out


@provide("consumer.home", "deals", order=20)
def _deals_section(page: PageContext) -> SlotItem | None:
    """附近团购: the nearest deals (search sorted by distance)."""
    location = page.extra.get("location")
    if location is None:
        return None
    with page.read() as session:
        found = search_service.search(
            session,
            lat=location.lat,
            lng=location.lng,
            kind="service",
            category_id=page.extra.get("category_id"),
            sort="distance",
            limit=6,
        )
        add_covers(session, found["items"])
    return SlotItem(
        "consumer/_deal_cards.html",
        {
            "title": "附近团购",
            "results": found["items"],
            "more": "/search?kind=service&sort=distance",
            "format_distance": format_distance,
        },
    )


@provide("consumer.home", "popular_goods", order=30)
def _popular_goods(page: PageContext) -> SlotItem | None:
    with page.read() as session:
        found = search_service.search(session, kind="goods", sort="sales", limit=6)
        add_covers(session, found["items"])
    if not found["items"]:
        return None
    return SlotItem(
        "consumer/_deal_cards.html",
        {
            "title": "热门商品",
            "results": found["items"],
            "more": "/search?kind=goods&sort=sales",
            "format_distance": format_distance,
        },
    )


# --- listing -----------------------------------------------------------------------------------


LISTING_REVIEWS = 5
REVIEWS_PAGE = 10


def render_listing(
    page: PageContext,
    listing_id: int,
    *,
    form: Form[Any] | None = None,
    status_code: int = 200,
) -> Response:
    """The listing page; ``form`` is the buy/cart form when it comes back with errors."""
    location = _location(page)
    with page.read() as session:
        listing = catalog.visible_listing(session, listing_id, page.actor)
        detail = catalog.listing_detail(
            session,
            listing,
            page.actor,
            lat=location.lat if location else None,
            lng=location.lng if location else None,
        )
        _listing, latest = reviews.listing_reviews(
            session, listing.id, page.actor, limit=LISTING_REVIEWS + 1
        )
        latest_out = reviews.reviews_out(session, latest[:LISTING_REVIEWS])
    stores = {s["id"]: s for s in detail["stores"]}
    return page.render(
        "consumer/listing.html",
        d=detail,
        location=location,
        stores_by_id=stores,
        map_link=map_link,
        geo_link=geo_link,
        format_distance=format_distance,
        reviews=latest_out,
        more_reviews=len(latest) > LISTING_REVIEWS,
        form=form,
        status_code=status_code,
    )


@router.get("/l/{listing_id}", name="consumer_listing")
def listing_page(page: PageDep, listing_id: Id) -> Response:
    return render_listing(page, listing_id)


@router.get("/l/{listing_id}/reviews", name="consumer_listing_reviews")
def listing_reviews_page(
    page: PageDep,
    listing_id: Id,
    before: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """全部评价, newest first, REVIEWS_PAGE at a time ("更多" follows ``before``)."""
    before_id = int(before) if before.isascii() and before.isdigit() and len(before) <= 18 else None
    with page.read() as session:
        listing, found = reviews.listing_reviews(
            session, listing_id, page.actor, limit=REVIEWS_PAGE + 1, before_id=before_id
        )
        items = reviews.reviews_out(session, found[:REVIEWS_PAGE])
    more = len(found) > REVIEWS_PAGE
    return page.render(
        "consumer/reviews.html",
        listing=listing,
        reviews=items,
        next_before=found[REVIEWS_PAGE - 1].id if more else None,
    )


# --- checkout ----------------------------------------------------------------------------------


class BuyForm(Schema):
    listing_id: Id
    sku_id: Id | None = None
    slot_id: Id | None = None
    quantity: Annotated[int, Field(ge=1, le=orders.MAX_LINE_QUANTITY)] = 1
    idempotency_key: Annotated[str, Field(min_length=8, max_length=64)] | None = None
    # Goods only: the shipping address (checked by the service: required for goods).
    name: Name | None = None
    phone: Phone | None = None
    province: Annotated[str, Field(max_length=20)] | None = None
    city: Annotated[str, Field(max_length=30)] | None = None
    district: Annotated[str, Field(max_length=30)] | None = None
    detail: Annotated[str, Field(max_length=200)] | None = None


ADDRESS_FIELDS = ("name", "phone", "province", "city", "district", "detail")
ADDRESS_LABELS = {
    "name": "收货人",
    "phone": "手机号",
    "province": "省份",
    "city": "城市",
    "district": "区县",
    "detail": "详细地址",
}


def _purchase(page: PageContext, data: BuyForm) -> catalog.Purchasable:
    with page.read() as session:
        catalog.visible_listing(session, data.listing_id, page.actor)
        return catalog.resolve_purchase(
            session, data.listing_id, sku_id=data.sku_id, slot_id=data.slot_id
        )


def _address_prefill(page: PageContext) -> dict[str, str]:
    """The last goods address this consumer used, else their name and phone."""
    assert page.actor is not None
    with page.read() as session:
        last = session.scalar(
            select(Order.shipping_address)
            .where(Order.user_id == page.actor.user_id, Order.kind == GOODS)
            .order_by(Order.id.desc())
            .limit(1)
        )
    if isinstance(last, dict):
        return {k: str(last.get(k) or "") for k in ADDRESS_FIELDS}
    return {"name": page.actor.name or "", "phone": getattr(page.actor, "phone", "") or ""}


def _render_checkout(
    page: PageContext, form: Form[BuyForm], item: catalog.Purchasable, quantity: int
) -> Response:
    return page.render(
        "consumer/checkout.html",
        form=form,
        item=item,
        quantity=quantity,
        total_fen=item.unit_price_fen * quantity
        + (item.shipping_fee_fen if item.kind == GOODS else 0),
        is_goods=item.kind == GOODS,
        address_labels=ADDRESS_LABELS,
        status_code=form.status,
    )


@router.get("/checkout", name="consumer_checkout")
def checkout_page(
    page: SignedInPageDep,
    listing_id: Annotated[Id, Query()],
    sku_id: Annotated[Id | None, Query()] = None,
    slot_id: Annotated[Id | None, Query()] = None,
    quantity: Annotated[int, Query(ge=1, le=orders.MAX_LINE_QUANTITY)] = 1,
) -> Response:
    data = BuyForm(listing_id=listing_id, sku_id=sku_id, slot_id=slot_id, quantity=quantity)
    item = _purchase(page, data)
    form = Form.blank(
        BuyForm,
        listing_id=listing_id,
        sku_id=sku_id,
        slot_id=slot_id,
        quantity=quantity,
        # One key per rendered form: a double click (or a resent POST) buys once.
        idempotency_key=secrets.token_urlsafe(18),
        **(_address_prefill(page) if item.kind == GOODS else {}),
    )
    return _render_checkout(page, form, item, quantity)


@router.post("/checkout", name="consumer_checkout_submit")
def checkout_submit(page: SignedInPageDep, data: FormDataDep) -> Response:
    assert page.actor is not None
    form = Form.parse(BuyForm, data)
    if form.data is None:
        raw = data.get("listing_id")
        if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 19):
            raise ValidationFailed("商品参数无效", field="listing_id")
        try:
            item = _purchase(page, BuyForm(listing_id=int(raw)))
        except AppError:
            raise ValidationFailed("商品参数无效", field="listing_id") from None
        return _render_checkout(page, form, item, 1)
    body = form.data
    item = _purchase(page, body)
    address = None
    if item.kind == GOODS:
        address = {k: getattr(body, k) for k in ADDRESS_FIELDS}
        for k, v in address.items():
            if not v:
                form.fail("此项必填", field=k)
        if not form.ok:
            return _render_checkout(page, form, item, body.quantity)
    cart = [orders.CartItem(body.listing_id, body.quantity, body.sku_id, body.slot_id)]
    try:
        result = checkout_once(page, cart, address, body.idempotency_key)
    except FORM_ERRORS as exc:
        form.apply_error(exc)
        return _render_checkout(page, form, item, body.quantity)
    return _go_pay(page, result["payment"]["payment_no"], result["orders"][0]["order_no"])


def checkout_once(
    page: PageContext,
    cart: list[orders.CartItem],
    address: dict[str, Any] | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """The checkout service, once per form key (a double click or a resent POST buys once).
    Raises the service's errors (the caller shows FORM_ERRORS on its form)."""
    assert page.actor is not None
    user_id = page.actor.user_id
    settings = page.settings
    payload = {"items": [item.__dict__ for item in cart], "shipping_address": address}
    # Last-touch attribution: the channel this browser came in through (?ch=…), if any.
    visitor = channel_visitor_id(page.request)

    def action(session: Any) -> tuple[int, dict[str, Any]]:
        return 201, orders.checkout(
            session,
            settings,
            user_id=user_id,
            items=cart,
            shipping_address=address,
            visitor_id=visitor,
        )

    for attempt in range(3):
        try:
            _status, result = run_once(
                page.db,
                scope=f"checkout:{user_id}",
                key=f"page-{idempotency_key}" if idempotency_key else None,
                payload=payload,
                action=action,
            )
            return result
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _go_pay(page: PageContext, payment_no: str, order_no: str) -> Response:
    """To the cashier (收银台, o2o.web.pages.consumer_pay) when WeChat Pay is configured; else
    start the payment with the sandbox cashier; without either, back to the order page."""
    assert page.actor is not None
    if registry.find_provider(registry.WECHATPAY, page.settings) is not None:
        return RedirectResponse(f"/pay/{payment_no}", status_code=303)
    try:
        started = payments.start_payment(
            page.db,
            page.settings,
            user_id=page.actor.user_id,
            payment_no=payment_no,
            provider_name=registry.SANDBOX,
        )
    except AppError as exc:
        return page.redirect(f"/orders/{order_no}", flash=exc.detail, kind="error")
    return RedirectResponse(started["cashier_url"], status_code=303)


# --- my orders ---------------------------------------------------------------------------------


STATUS_BADGES = {
    "pending_payment": "badge-pending",
    "paid": "badge-info",
    "shipped": "badge-info",
    "completed": "badge-approved",
}


@router.get("/orders", name="consumer_orders")
def my_orders(page: SignedInPageDep) -> Response:
    assert page.actor is not None
    with page.read() as session:
        found = list(orders.list_own_orders(session, page.actor.user_id, limit=50))
        lines = orders.lines_by_order(session, [o.id for o in found])
        names = orders.merchant_names(session, [o.merchant_id for o in found])
    return page.render(
        "consumer/orders.html",
        orders=found,
        lines=lines,
        names=names,
        order_word=order_word,
        amount_label=amount_label,
        badges=STATUS_BADGES,
    )


@router.get("/orders/{order_no}", name="consumer_order")
def order_page(page: SignedInPageDep, order_no: OrderNoPath) -> Response:
    return render_order(page, order_no)


def render_order(
    page: PageContext, order_no: str, *, status_code: int = 200, **forms: Any
) -> Response:
    """The order page; ``forms`` are consumer_fulfil's forms coming back with errors."""
    assert page.actor is not None
    with page.read() as session:
        order = orders.get_own_order(session, page.actor.user_id, order_no)
        lines = orders.lines_by_order(session, [order.id])[order.id]
        names = orders.merchant_names(session, [order.merchant_id])
        payment = session.get(Payment, order.payment_id)
        found = vouchers.order_vouchers_out(session, [order])[order.id]
        # 团购详情 and the stores of each voucher (linked to the store pages).
        deal_terms = lookups.deal_terms_of(session, [v["listing_id"] for v in found])
        store_ids = {s for v in found for s in v["store_ids"]} | {
            v["redeemed_store_id"] for v in found if v["redeemed_store_id"]
        }
        store_names = merchants.store_names(session, store_ids)
        # Parcels, receipt, after-sales and reviews (o2o.web.pages.consumer_fulfil).
        after = fulfil.order_context(session, page, order, lines, **forms)
        timeline = orders.timeline(session, order.id)
    return page.render(
        "consumer/order.html",
        order=order,
        lines=lines,
        merchant_name=names.get(order.merchant_id, ""),
        payment=payment,
        vouchers=found,
        deal_terms=deal_terms,
        store_names=store_names,
        status_label=order_word(order),
        amount_label=amount_label(order),
        voucher_words=VOUCHER_WORDS,
        badge=STATUS_BADGES.get(order.status, ""),
        payable=order.status == PENDING_PAYMENT,
        timeline=timeline,
        status_code=status_code,
        **after,
    )


@router.post("/orders/{order_no}/pay", name="consumer_order_pay")
def order_pay(page: SignedInPageDep, order_no: OrderNoPath) -> Response:
    assert page.actor is not None
    with page.read() as session:
        order = orders.get_own_order(session, page.actor.user_id, order_no)
        payment_no = session.scalar(
            select(Payment.payment_no).where(Payment.id == order.payment_id)
        )
    assert payment_no is not None
    return _go_pay(page, payment_no, order_no)


@router.post("/orders/{order_no}/cancel", name="consumer_order_cancel")
def order_cancel(page: SignedInPageDep, order_no: OrderNoPath) -> Response:
    assert page.actor is not None
    try:
        payments.cancel_order(page.db, page.settings, user_id=page.actor.user_id, order_no=order_no)
    except FORM_ERRORS as exc:
        return page.redirect(f"/orders/{order_no}", flash=exc.detail, kind="error")
    return page.redirect(f"/orders/{order_no}", flash="订单已取消")


@router.get("/orders/{order_no}/vouchers/{code}/qr.svg", name="consumer_voucher_qr")
def voucher_qr(page: SignedInPageDep, order_no: OrderNoPath, code: CodePath) -> Response:
    """The voucher's QR for the page session (the API's needs a bearer token)."""
    assert page.actor is not None
    with page.read() as session:
        order = orders.get_own_order(session, page.actor.user_id, order_no)
        voucher = vouchers.get_own_voucher(session, page.actor.user_id, code)
        if voucher.order_id != order.id:
            raise vouchers.not_found()
    return Response(
        vouchers.qr_svg(voucher.code),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, no-store"},
    )


@router.post("/orders/{order_no}/vouchers/{code}/refund", name="consumer_voucher_refund")
def voucher_refund(
    page: SignedInPageDep, order_no: OrderNoPath, code: CodePath, data: FormDataDep
) -> Response:
    """随时退 of one voucher; the form's key makes a double click refund once."""
    assert page.actor is not None
    with page.read() as session:
        order = orders.get_own_order(session, page.actor.user_id, order_no)
        voucher = vouchers.get_own_voucher(session, page.actor.user_id, code)
        if voucher.order_id != order.id:
            raise vouchers.not_found()
    raw_key = data.get("idempotency_key")
    key = raw_key if isinstance(raw_key, str) and 8 <= len(raw_key) <= 64 else None
    try:
        _status, body = vouchers.consumer_refund(
            page.db,
            page.settings,
            user_id=page.actor.user_id,
            order_no=order_no,
            codes=[voucher.code],
            reason="随时退",
            idempotency_key=f"page-{key}" if key else None,
        )
    except FORM_ERRORS as exc:
        return page.redirect(f"/orders/{order_no}", flash=exc.detail, kind="error")
    return page.redirect(
        f"/orders/{order_no}", flash=f"退款已提交（{body.get('status_label', '')}）"
    )
