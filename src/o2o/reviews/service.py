"""Reviews: only the order's consumer, only after consumption, once per line; one reply.

Consumption means: goods — the order was received (``completed_at`` set by confirm-receipt or
auto-confirm); services — a voucher of the reviewed line was redeemed (``o2o.fulfilment``'s
``vouchers`` table, imported lazily so this domain does not depend on it at import time).

Every review adds its stars to the listing (``catalog.add_rating`` + the search hook, so search
can sort by rating), the merchant and — for services — the store where it was redeemed
(``ratings``), each with one atomic statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.catalog import service as catalog
from o2o.catalog.models import GOODS
from o2o.errors import Conflict, NotFound, ValidationFailed
from o2o.merchants import service as merchants
from o2o.merchants.access import MANAGERS, Actor
from o2o.merchants.models import Store
from o2o.orders import service as orders
from o2o.orders.models import Order, OrderLine
from o2o.reviews.models import MERCHANT, STORE, Rating, Review
from o2o.search import indexer
from o2o.timeutil import utcnow

MAX_TEXT = 1000
MAX_REPLY = 500


# --- consumption ----------------------------------------------------------------------------------


def _redeemed_store(session: Session, line: OrderLine) -> tuple[bool, int | None]:
    """(a voucher of the line was redeemed, the store of the latest such redemption)."""
    try:
        from o2o.fulfilment.models import Voucher
    except ImportError:  # vouchers not installed: nothing can have been redeemed
        return False, None
    row = session.execute(
        select(Voucher.redeemed_store_id)
        .where(Voucher.order_line_id == line.id, Voucher.status == "redeemed")
        .order_by(Voucher.redeemed_at.desc(), Voucher.id.desc())
        .limit(1)
    ).first()
    return (row is not None, row[0] if row else None)


def consumption(session: Session, order: Order, line: OrderLine) -> tuple[bool, int | None]:
    """(may the line be reviewed, the store to credit)."""
    if order.kind == GOODS:
        return order.completed_at is not None, None
    return _redeemed_store(session, line)


def _line_to_review(
    session: Session, order: Order, line_id: int | None
) -> tuple[OrderLine, list[OrderLine]]:
    lines = orders.lines_by_order(session, [order.id])[order.id]
    if line_id is None:
        if len(lines) != 1:
            raise ValidationFailed("订单有多件商品，请选择要评价的商品", field="line_id")
        return lines[0], lines
    for line in lines:
        if line.id == line_id:
            return line, lines
    raise ValidationFailed("订单中没有该商品", code="line_not_in_order", field="line_id")


# --- ratings --------------------------------------------------------------------------------------


def _add_to_rating(session: Session, subject_type: str, subject_id: int, stars: int) -> None:
    """One upsert: the row appears on the first review, later ones add atomically."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Rating).values(
        subject_type=subject_type, subject_id=subject_id, rating_sum=stars, rating_count=1
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["subject_type", "subject_id"],
        set_={
            "rating_sum": Rating.rating_sum + stmt.excluded.rating_sum,
            "rating_count": Rating.rating_count + 1,
        },
    )
    session.execute(stmt)


def rating_of(session: Session, subject_type: str, subject_id: int) -> tuple[float | None, int]:
    """(average rounded to 0.1 or None when unrated, number of reviews) of a merchant/store."""
    row = session.get(Rating, (subject_type, subject_id), populate_existing=True)
    if row is None or not row.rating_count:
        return None, 0
    return row.rating, row.rating_count


# --- writing --------------------------------------------------------------------------------------


def create_review(
    session: Session,
    user_id: int,
    order_no: str,
    *,
    rating: int,
    text: str = "",
    line_id: int | None = None,
    now: datetime | None = None,
) -> Review:
    """评价 a line of the consumer's own order (the only line when ``line_id`` is omitted)."""
    now = now or utcnow()
    if not 1 <= rating <= 5:
        raise ValidationFailed("评分必须为 1–5 星", field="rating")
    if len(text) > MAX_TEXT:
        raise ValidationFailed(f"评价最多 {MAX_TEXT} 字", field="text")
    order = orders.get_own_order(session, user_id, order_no)
    line, _lines = _line_to_review(session, order, line_id)
    consumed, store_id = consumption(session, order, line)
    if not consumed:
        detail = "确认收货后才能评价" if order.kind == GOODS else "券码核销后才能评价"
        raise Conflict(detail, code="not_consumed")
    if session.scalar(select(Review.id).where(Review.order_line_id == line.id)) is not None:
        raise Conflict("该商品已评价过", code="already_reviewed")
    review = Review(
        order_id=order.id,
        order_line_id=line.id,
        user_id=user_id,
        merchant_id=order.merchant_id,
        listing_id=line.listing_id,
        store_id=store_id,
        rating=rating,
        text=text,
        created_at=now,
    )
    try:
        # The unique line index refuses a concurrent second review here.
        with session.begin_nested():
            session.add(review)
    except IntegrityError:
        raise Conflict("该商品已评价过", code="already_reviewed") from None
    catalog.add_rating(session, line.listing_id, rating)
    _add_to_rating(session, MERCHANT, order.merchant_id, rating)
    if store_id is not None:
        _add_to_rating(session, STORE, store_id, rating)
    indexer.listing_changed(session, line.listing_id)
    return review


def reply(
    session: Session,
    actor: Actor,
    merchant_id: int,
    review_id: int,
    text: str,
    *,
    now: datetime | None = None,
) -> Review:
    """商家回复 (owner, manager), once."""
    now = now or utcnow()
    actor.require_staff(merchant_id, MANAGERS)
    text = text.strip()
    if not text or len(text) > MAX_REPLY:
        raise ValidationFailed(f"回复需 1–{MAX_REPLY} 字", field="text")
    review = session.get(Review, review_id)
    if review is None or review.merchant_id != merchant_id:
        raise NotFound("评价不存在", code="review_not_found")
    result = session.execute(
        update(Review)
        .where(Review.id == review_id, Review.reply.is_(None))
        .values(reply=text, replied_by=actor.user_id, replied_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict("该评价已回复过", code="already_replied")
    session.refresh(review)
    return review


# --- reading --------------------------------------------------------------------------------------


def _page(stmt: Any, limit: int, before_id: int | None) -> Any:
    stmt = stmt.order_by(Review.id.desc()).limit(limit)
    if before_id:
        stmt = stmt.where(Review.id < before_id)
    return stmt


def listing_reviews(
    session: Session,
    listing_id: int,
    actor: Actor | None,
    *,
    limit: int = 20,
    before_id: int | None = None,
) -> tuple[Any, Sequence[Review]]:
    """(the listing, its reviews newest first); 404 where the listing is not visible."""
    listing = catalog.visible_listing(session, listing_id, actor)
    found = session.scalars(
        _page(select(Review).where(Review.listing_id == listing.id), limit, before_id)
    ).all()
    return listing, found


def merchant_reviews(
    session: Session,
    merchant_id: int,
    actor: Actor | None,
    *,
    store_id: int | None = None,
    replied: bool | None = None,
    limit: int = 20,
    before_id: int | None = None,
) -> Sequence[Review]:
    merchants.visible_merchant(session, merchant_id, actor)
    stmt = select(Review).where(Review.merchant_id == merchant_id)
    if store_id is not None:
        merchants.get_store(session, merchant_id, store_id)  # 404 unless the merchant's
        stmt = stmt.where(Review.store_id == store_id)
    if replied is not None:
        stmt = stmt.where(Review.reply.is_not(None) if replied else Review.reply.is_(None))
    return session.scalars(_page(stmt, limit, before_id)).all()


def order_reviews(
    session: Session, user_id: int, order_no: str
) -> tuple[Sequence[Review], list[int]]:
    """The consumer's reviews of an order, and the lines that can be reviewed now."""
    order = orders.get_own_order(session, user_id, order_no)
    found = session.scalars(
        select(Review).where(Review.order_id == order.id).order_by(Review.id)
    ).all()
    done = {r.order_line_id for r in found}
    reviewable = [
        line.id
        for line in orders.lines_by_order(session, [order.id])[order.id]
        if line.id not in done and consumption(session, order, line)[0]
    ]
    return found, reviewable


def _mask(name: str) -> str:
    return (name[:1] + "**") if name else "匿名用户"


def reviews_out(session: Session, reviews: Sequence[Review]) -> list[dict[str, Any]]:
    if not reviews:
        return []
    names = dict(
        session.execute(
            select(User.id, User.name).where(User.id.in_({r.user_id for r in reviews}))
        ).all()
    )
    lines = {
        line.id: line
        for line in session.scalars(
            select(OrderLine).where(OrderLine.id.in_({r.order_line_id for r in reviews}))
        )
    }
    store_ids = {r.store_id for r in reviews if r.store_id is not None}
    stores = (
        dict(session.execute(select(Store.id, Store.name).where(Store.id.in_(store_ids))).all())
        if store_ids
        else {}
    )
    return [
        {
            "id": r.id,
            "listing_id": r.listing_id,
            "merchant_id": r.merchant_id,
            "line_id": r.order_line_id,
            "title": lines[r.order_line_id].title,
            "sku_name": lines[r.order_line_id].sku_name,
            "store_id": r.store_id,
            "store_name": stores.get(r.store_id) if r.store_id else None,
            "consumer_name": _mask(names.get(r.user_id, "")),
            "rating": r.rating,
            "text": r.text,
            "reply": r.reply,
            "replied_at": r.replied_at,
            "created_at": r.created_at,
        }
        for r in reviews
    ]
