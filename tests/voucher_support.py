"""Helpers for voucher and redemption tests: buy and pay deals through the API, then look at
(and, to simulate time passing, move) the vouchers in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from o2o.catalog.models import Listing, TimeSlot
from o2o.db import Database
from o2o.fulfilment.models import RedemptionAttempt, Voucher
from o2o.orders.models import Order
from o2o.payments.models import Refund
from o2o.timeutil import utcnow
from tests.checkout_support import Deal, SlotDeal, make_deal, make_slot_deal, pay_sandbox, place


@dataclass
class Bought:
    order_no: str
    payment_no: str
    codes: list[str]
    body: dict[str, Any]


def buy(
    api: Any,
    token: str,
    items: list[dict[str, Any]],
    *,
    pay: bool = True,
) -> Bought:
    """Checkout (one service order) and pay it with the sandbox; the vouchers' codes."""
    r = place(api, token, items)
    assert r.status_code == 201, r.text
    body = r.json()
    order_no = body["orders"][0]["order_no"]
    payment_no = body["payment"]["payment_no"]
    codes: list[str] = []
    if pay:
        pay_sandbox(api, token, payment_no)
        detail = api.get(f"/api/v1/orders/{order_no}", as_=token)
        assert detail.status_code == 200, detail.text
        codes = [v["code"] for v in detail.json()["vouchers"]]
    return Bought(order_no, payment_no, codes, body)


def deal_item(deal: Deal | SlotDeal, quantity: int = 1) -> dict[str, Any]:
    item: dict[str, Any] = {"listing_id": deal.listing_id, "quantity": quantity}
    if isinstance(deal, SlotDeal):
        item["slot_id"] = deal.slot_id
    return item


def a_deal(world: Any, *, stores: list[int] | None = None, **listing: Any) -> Deal:
    """A deal of merchant A (both stores unless told), with listing fields overridden."""
    deal = make_deal(
        world.db,
        world.a.id,
        world.category_id,
        stores if stores is not None else world.a.store_ids,
        price_fen=listing.pop("price_fen", 5000),
        stock=listing.pop("stock", None),
    )
    if listing:
        set_listing(world.db, deal.listing_id, **listing)
    return deal


def a_slot_deal(world: Any, *, starts_in: timedelta = timedelta(days=1), **kw: Any) -> SlotDeal:
    return make_slot_deal(
        world.db, world.a.id, world.category_id, world.a.store_ids[0], starts_in=starts_in, **kw
    )


def set_listing(db: Database, listing_id: int, **fields: Any) -> None:
    with db.transaction() as session:
        session.execute(update(Listing).where(Listing.id == listing_id).values(**fields))


def set_vouchers(db: Database, codes: list[str], **fields: Any) -> None:
    """Move time for vouchers (e.g. a validity that has ended) without waiting."""
    with db.transaction() as session:
        session.execute(update(Voucher).where(Voucher.code.in_(codes)).values(**fields))


def move_slot(db: Database, slot_id: int, starts_at: datetime, ends_at: datetime) -> None:
    """The slot (and its vouchers' snapshot) now runs from ``starts_at`` to ``ends_at``."""
    with db.transaction() as session:
        session.execute(
            update(TimeSlot)
            .where(TimeSlot.id == slot_id)
            .values(starts_at=starts_at, ends_at=ends_at)
        )
        session.execute(
            update(Voucher)
            .where(Voucher.slot_id == slot_id)
            .values(slot_starts_at=starts_at, slot_ends_at=ends_at, valid_until=ends_at)
        )


def voucher(db: Database, code: str) -> Voucher:
    with db.transaction(readonly=True) as session:
        found = session.scalar(select(Voucher).where(Voucher.code == code))
        assert found is not None
        return found


def statuses(db: Database, codes: list[str]) -> list[str]:
    return [voucher(db, c).status for c in codes]


def order_status(db: Database, order_no: str) -> str:
    with db.transaction(readonly=True) as session:
        status = session.scalar(select(Order.status).where(Order.order_no == order_no))
        assert status is not None
        return status


def refunds_of(db: Database, order_no: str) -> list[Refund]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(Refund)
                .join(Order, Order.id == Refund.order_id)
                .where(Order.order_no == order_no)
                .order_by(Refund.id)
            )
        )


def attempts(db: Database, **where: Any) -> list[RedemptionAttempt]:
    with db.transaction(readonly=True) as session:
        stmt = select(RedemptionAttempt).order_by(RedemptionAttempt.id)
        for name, value in where.items():
            stmt = stmt.where(getattr(RedemptionAttempt, name) == value)
        return list(session.scalars(stmt))


def count_vouchers(db: Database, **where: Any) -> int:
    with db.transaction(readonly=True) as session:
        stmt = select(func.count()).select_from(Voucher)
        for name, value in where.items():
            stmt = stmt.where(getattr(Voucher, name) == value)
        return int(session.scalar(stmt) or 0)


def redeem(
    api: Any,
    world: Any,
    code: str,
    *,
    store_id: int | None = None,
    as_: str = "clerk",
    merchant_id: int | None = None,
    key: str | None = None,
) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(
        f"/api/v1/merchants/{merchant_id or world.a.id}/redemptions",
        json={"code": code, "store_id": store_id or world.a.store_ids[0]},
        as_=world.tokens[as_],
        headers=headers,
    )


def ago(**kw: Any) -> datetime:
    return utcnow() - timedelta(**kw)


def later(**kw: Any) -> datetime:
    return utcnow() + timedelta(**kw)


def paid_order(db: Database, user_id: int, listing_id: int, quantity: int = 1) -> Bought:
    """A service order checked out and paid through the services (no HTTP): for fixtures
    such as the authorization rules. The payment is applied as a verified sandbox event."""
    from o2o.config import Settings
    from o2o.orders import service as orders
    from o2o.payments import service as payments
    from o2o.payments.models import PENDING
    from o2o.payments.providers import EVENT_SUCCEEDED, PaymentEvent

    settings = Settings(
        database_url="sqlite://", secret_key="k" * 40, demo=False, sandbox_payments=True
    )
    with db.transaction() as session:
        body = orders.checkout(
            session,
            settings,
            user_id=user_id,
            items=[orders.CartItem(listing_id, quantity)],
        )
    payment_no = body["payment"]["payment_no"]
    with db.transaction() as session:
        payment = payments.lock_payment(session, payment_no=payment_no)
        assert payment is not None
        payment.provider, payment.status, payment.started_at = "sandbox", PENDING, utcnow()
        applied = payments.apply_payment_event(
            session,
            PaymentEvent("sandbox", payment_no, EVENT_SUCCEEDED, payment.amount_fen),
        )
        assert applied.result == "applied", applied
    order_no = body["orders"][0]["order_no"]
    with db.transaction(readonly=True) as session:
        codes = list(
            session.scalars(
                select(Voucher.code)
                .join(Order, Order.id == Voucher.order_id)
                .where(Order.order_no == order_no)
                .order_by(Voucher.id)
            )
        )
    return Bought(order_no, payment_no, codes, body)
