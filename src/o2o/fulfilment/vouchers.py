"""券码: issuing vouchers when a service order is paid, showing them, 随时退 (refund any time
before use), 过期自动退 (expiry with automatic refund) and the order's completion.

Lock order, everywhere in this package: voucher rows first (in id order), then the order row,
then inventory items — the payment core takes order then items too, so nothing deadlocks.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import segno
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from o2o import events
from o2o.catalog.models import Listing, ListingStore, TimeSlot
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import AppError, Conflict, Gone, NotFound, ValidationFailed
from o2o.events import BY_WORKER, USER, Who
from o2o.fulfilment.models import (
    EXPIRED,
    REDEEMED,
    REFUNDED,
    UNUSED,
    VOUCHER_STATUS,
    Voucher,
)
from o2o.idempotency import run_once
from o2o.inventory import service as inventory
from o2o.inventory.models import InventoryHold
from o2o.money import split_proportionally
from o2o.orders import service as orders
from o2o.orders.models import COMPLETED, ORDER_STATUS, SERVICE, Order, OrderLine
from o2o.payments import service as payments
from o2o.payments.models import REFUND_STATUS, REFUND_SWEPT, Refund
from o2o.timeutil import utcnow

log = logging.getLogger(__name__)

CODE_DIGITS = 12
MAX_CODE_DIGITS = 20
ISSUE_ATTEMPTS = 3
# An offer without valid_days or valid_until cannot be published; this only guards old rows.
FALLBACK_VALID_DAYS = 365


# --- settings ------------------------------------------------------------------------------


class RedemptionSettings(BaseSettings):
    """``O2O_REDEMPTION_*``. A field of the same name on ``o2o.config.Settings`` wins."""

    model_config = SettingsConfigDict(env_prefix="O2O_", extra="ignore")

    # A manager may undo a redemption for this long after it.
    redemption_undo_minutes: int = Field(default=10, ge=0, le=24 * 60)
    # A slot voucher can be redeemed from this long before the slot starts until it ends.
    redemption_early_minutes: int = Field(default=30, ge=0, le=24 * 60)
    # Attempts that look like guessing (unknown codes) per minute before 429: per staff member,
    # and per store (previews name no store: those count per staff member only), so one store's
    # guessing cannot stop another's.
    redemption_staff_failures_per_minute: int = Field(default=10, ge=1)
    redemption_store_failures_per_minute: int = Field(default=30, ge=1)
    # Where the throttle counts (the same fields of o2o.config.Settings win).
    redis_url: str = ""
    redis_key_prefix: str = "o2o"


@lru_cache
def _settings_from_env() -> RedemptionSettings:
    return RedemptionSettings()


def redemption_settings(settings: Settings | None = None) -> RedemptionSettings:
    base = _settings_from_env()
    if settings is None:
        return base
    fields = type(settings).model_fields
    overrides = {n: getattr(settings, n) for n in RedemptionSettings.model_fields if n in fields}
    return base.model_copy(update=overrides) if overrides else base


# --- codes ---------------------------------------------------------------------------------


def new_code() -> str:
    """12 digits from the CSPRNG: 10^12 codes, so guessing one is hopeless under throttling."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def format_code(code: str) -> str:
    """``387120495521`` → ``3871 2049 5521`` (how it is shown and read aloud)."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalize_code(raw: str) -> str | None:
    """What a clerk typed (spaces and dashes allowed) → the digits, or None if it cannot be a
    code."""
    digits = raw.replace(" ", "").replace("-", "")
    if CODE_DIGITS <= len(digits) <= MAX_CODE_DIGITS and digits.isascii() and digits.isdigit():
        return digits
    return None


def mask_phone(phone: str | None) -> str:
    """``13800000000`` → ``138****0000`` (a WeChat-only account has no phone: ``****``)."""
    return f"{phone[:3]}****{phone[-4:]}" if phone and len(phone) >= 8 else "****"


def not_found() -> NotFound:
    """Unknown, malformed and another merchant's codes all look exactly like this."""
    return NotFound("券码不存在", code="voucher_not_found")


def expired_refusal() -> Gone:
    return Gone("该券码已过期", code="voucher_expired", title="券码已失效")


def refusal_for_status(status: str, **extra: Any) -> AppError | None:
    """The stable refusal for a voucher that is not ``unused``."""
    if status == REDEEMED:
        return Conflict("该券码已核销", code="voucher_already_redeemed", **extra)
    if status == REFUNDED:
        return Gone("该券码已退款", code="voucher_refunded", title="券码已失效")
    if status == EXPIRED:
        return expired_refusal()
    return None


# --- issuing -------------------------------------------------------------------------------


def _valid_until(listing: Listing, slot: TimeSlot | None, paid_at: datetime) -> datetime:
    if slot is not None:
        return slot.ends_at
    if listing.valid_until is not None:
        return listing.valid_until
    return paid_at + timedelta(days=listing.valid_days or FALLBACK_VALID_DAYS)


def _unit_amounts(order: Order, lines: Sequence[OrderLine]) -> dict[int, list[int]]:
    """Each unit's share of what the order paid (discounts included), to the fen: what a
    refund of that voucher gives back. The shares add up exactly to ``payable_fen``."""
    shares = split_proportionally(order.payable_fen, [line.amount_fen for line in lines])
    return {
        line.id: split_proportionally(share, [1] * line.quantity)
        for line, share in zip(lines, shares, strict=True)
    }


def on_order_paid(session: Session, event: events.OrderPaid) -> None:
    """``order.paid`` (in the transaction, ``o2o.wiring``): issue a service order's vouchers."""
    if event.kind != SERVICE:
        return
    order = session.get(Order, event.order_id)
    assert order is not None
    issue_for_order(session, order, orders.lines_by_order(session, [order.id])[order.id])


def issue_for_order(session: Session, order: Order, lines: Sequence[OrderLine]) -> list[Voucher]:
    """One voucher per unit of a paid service order. Idempotent: units that already have a
    voucher are skipped, and (order_line_id, unit_no) is unique, so paying twice (a replayed
    notification, a revived order) never issues twice."""
    if order.kind != SERVICE or not lines:
        return []
    existing = set(
        session.execute(
            select(Voucher.order_line_id, Voucher.unit_no).where(Voucher.order_id == order.id)
        )
    )
    listing_ids = sorted({line.listing_id for line in lines})
    listings = {
        listing.id: listing
        for listing in session.scalars(select(Listing).where(Listing.id.in_(listing_ids)))
    }
    stores: dict[int, list[int]] = {lid: [] for lid in listing_ids}
    for listing_id, store_id in session.execute(
        select(ListingStore.listing_id, ListingStore.store_id)
        .where(ListingStore.listing_id.in_(listing_ids))
        .order_by(ListingStore.store_id)
    ):
        stores[listing_id].append(store_id)
    slot_ids = sorted({line.slot_id for line in lines if line.slot_id is not None})
    slots = {
        slot.id: slot
        for slot in (
            session.scalars(select(TimeSlot).where(TimeSlot.id.in_(slot_ids))) if slot_ids else []
        )
    }
    paid_at = order.paid_at or utcnow()
    now = utcnow()
    amounts = _unit_amounts(order, lines)
    rows: list[dict[str, Any]] = []
    for line in lines:
        listing = listings[line.listing_id]
        slot = slots.get(line.slot_id) if line.slot_id is not None else None
        for unit_no in range(1, line.quantity + 1):
            if (line.id, unit_no) in existing:
                continue
            rows.append(
                {
                    "order_id": order.id,
                    "order_line_id": line.id,
                    "unit_no": unit_no,
                    "listing_id": listing.id,
                    "merchant_id": order.merchant_id,
                    "user_id": order.user_id,
                    "slot_id": slot.id if slot else None,
                    "slot_store_id": slot.store_id if slot else None,
                    "slot_starts_at": slot.starts_at if slot else None,
                    "slot_ends_at": slot.ends_at if slot else None,
                    # A booked slot is used at its store; a deal at any store it lists.
                    "store_ids": [slot.store_id] if slot else stores[listing.id],
                    "refund_anytime": listing.refund_anytime,
                    "auto_refund_on_expiry": listing.auto_refund_on_expiry,
                    "amount_fen": amounts[line.id][unit_no - 1],
                    "valid_from": paid_at,
                    "valid_until": _valid_until(listing, slot, paid_at),
                    "status": UNUSED,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    if not rows:
        return []
    issued = _insert_with_fresh_codes(session, rows)
    events.publish(
        session,
        events.VouchersIssued(order_id=order.id, voucher_ids=tuple(v.id for v in issued)),
    )
    return issued


def _insert_with_fresh_codes(session: Session, rows: list[dict[str, Any]]) -> list[Voucher]:
    """Insert with new codes; a code already taken (one in a million at 10^6 vouchers) is
    drawn again — checked first, and the unique index decides under concurrency."""
    for attempt in range(ISSUE_ATTEMPTS):
        codes = _distinct_codes(len(rows))
        taken = set(session.scalars(select(Voucher.code).where(Voucher.code.in_(codes))))
        while taken:
            codes = [c for c in codes if c not in taken]
            codes += _distinct_codes(len(rows) - len(codes), avoid=set(codes))
            taken = set(session.scalars(select(Voucher.code).where(Voucher.code.in_(codes))))
        vouchers = [Voucher(**row, code=code) for row, code in zip(rows, codes, strict=True)]
        savepoint = session.begin_nested()
        try:
            session.add_all(vouchers)
            session.flush()
        except IntegrityError:
            savepoint.rollback()
            if attempt == ISSUE_ATTEMPTS - 1:
                raise
            log.warning("voucher code collision while issuing; drawing again")
            continue
        savepoint.commit()
        return vouchers
    raise AssertionError("unreachable")


def _distinct_codes(n: int, avoid: set[str] | None = None) -> list[str]:
    seen = set(avoid or ())
    codes: list[str] = []
    while len(codes) < n:
        code = new_code()
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


# --- reading -------------------------------------------------------------------------------


def vouchers_by_order(session: Session, order_ids: Sequence[int]) -> dict[int, list[Voucher]]:
    result: dict[int, list[Voucher]] = {oid: [] for oid in order_ids}
    if not order_ids:
        return result
    for voucher in session.scalars(
        select(Voucher)
        .where(Voucher.order_id.in_(order_ids))
        .order_by(Voucher.order_line_id, Voucher.unit_no)
    ):
        result[voucher.order_id].append(voucher)
    return result


def is_refundable(voucher: Voucher, now: datetime | None = None) -> bool:
    """Can the consumer take it back right now (随时退)?"""
    now = now or utcnow()
    return (
        voucher.status == UNUSED
        and voucher.refund_anytime
        and (voucher.valid_until > now or voucher.auto_refund_on_expiry)
    )


def voucher_out(
    voucher: Voucher, *, title: str = "", now: datetime | None = None
) -> dict[str, Any]:
    """The consumer's view of their voucher (with the code)."""
    return {
        "code": voucher.code,
        "code_display": format_code(voucher.code),
        "status": voucher.status,
        "status_label": VOUCHER_STATUS.label(voucher.status),
        "listing_id": voucher.listing_id,
        "order_line_id": voucher.order_line_id,
        "title": title,
        "amount_fen": voucher.amount_fen,
        "store_ids": list(voucher.store_ids or []),
        "slot_id": voucher.slot_id,
        "slot_starts_at": voucher.slot_starts_at,
        "slot_ends_at": voucher.slot_ends_at,
        "valid_from": voucher.valid_from,
        "valid_until": voucher.valid_until,
        "refund_anytime": voucher.refund_anytime,
        "auto_refund_on_expiry": voucher.auto_refund_on_expiry,
        "refundable": is_refundable(voucher, now),
        "redeemed_at": voucher.redeemed_at,
        "redeemed_store_id": voucher.redeemed_store_id,
        "refunded_at": voucher.refunded_at,
        "expired_at": voucher.expired_at,
        "qr_url": f"/api/v1/vouchers/{voucher.code}/qr.svg",
    }


def voucher_staff_out(voucher: Voucher) -> dict[str, Any]:
    """What staff see of a voucher in an order: never the code (they redeem what the consumer
    shows), only its last digits."""
    return {
        "code_tail": voucher.code[-4:],
        "status": voucher.status,
        "status_label": VOUCHER_STATUS.label(voucher.status),
        "order_line_id": voucher.order_line_id,
        "slot_id": voucher.slot_id,
        "valid_until": voucher.valid_until,
        "redeemed_at": voucher.redeemed_at,
        "redeemed_store_id": voucher.redeemed_store_id,
    }


def order_vouchers_out(
    session: Session, orders_: Sequence[Order], *, staff: bool = False
) -> dict[int, list[dict[str, Any]]]:
    """Vouchers of orders for the order views (consumer: full; staff: without codes)."""
    ids = [o.id for o in orders_ if o.kind == SERVICE]
    found = vouchers_by_order(session, ids)
    result: dict[int, list[dict[str, Any]]] = {o.id: [] for o in orders_}
    if not ids:
        return result
    titles = dict(
        session.execute(
            select(OrderLine.id, OrderLine.title).where(OrderLine.order_id.in_(ids))
        ).all()
    )
    now = utcnow()
    for order_id, vouchers in found.items():
        result[order_id] = [
            voucher_staff_out(v)
            if staff
            else voucher_out(v, title=titles.get(v.order_line_id, ""), now=now)
            for v in vouchers
        ]
    return result


def get_own_voucher(session: Session, user_id: int, code: str) -> Voucher:
    """The consumer's own voucher; anyone else's is 404."""
    normalized = normalize_code(code)
    voucher = (
        session.scalar(select(Voucher).where(Voucher.code == normalized)) if normalized else None
    )
    if voucher is None or voucher.user_id != user_id:
        raise not_found()
    return voucher


def qr_svg(code: str) -> bytes:
    """The voucher as a QR code (the digits only: any scanner gun types them into the till)."""
    buffer = io.BytesIO()
    segno.make(code, error="m", micro=False).save(
        buffer, kind="svg", scale=8, border=2, xmldecl=False, title=f"券码 {format_code(code)}"
    )
    return buffer.getvalue()


# --- the order follows its vouchers --------------------------------------------------------


_ORDERS = Order.__table__.c
_VOUCHERS = Voucher.__table__.c
# Built once: the redemption hot path runs these on every call.
_LOCK_ORDER = (
    select(_ORDERS.status, _ORDERS.kind)
    .where(_ORDERS.id == bindparam("order_id"))
    .with_for_update()
)
_COUNT_BY_STATUS = (
    select(_VOUCHERS.status, func.count())
    .where(_VOUCHERS.order_id == bindparam("order_id"))
    .group_by(_VOUCHERS.status)
)


def refresh_order_status(
    session: Session, order_id: int, *, by: Who, reason: str = ""
) -> str | None:
    """`completed` when no voucher is unused and at least one was redeemed; `refunding` →
    `refunded` (the payment core finishes it when the money is back) when all were refunded;
    back to `paid` when an undone redemption leaves a completed order with an unused voucher.

    Locks the order row first (after the vouchers: see the module's lock order), so of two
    vouchers of one order redeemed at once the later sees the earlier. Two Core statements when
    nothing moves; the move itself goes through ``orders.set_status``. Returns the action."""
    params = {"order_id": order_id}
    status, kind = session.execute(_LOCK_ORDER, params).one()
    if kind != SERVICE:
        return None
    counts: dict[str, int] = dict(session.execute(_COUNT_BY_STATUS, params).all())
    total = sum(counts.values())
    unused, redeemed = counts.get(UNUSED, 0), counts.get(REDEEMED, 0)
    action: str | None = None
    if total and not unused and redeemed:
        action = "complete"
    elif total and counts.get(REFUNDED, 0) == total:
        # Open refunds, and abnormal ones (the money left, it has not arrived yet).
        money_on_its_way = session.scalar(
            select(func.count()).where(Refund.order_id == order_id, Refund.status.in_(REFUND_SWEPT))
        )
        action = "request_refund" if money_on_its_way else "all_refunded"
    elif unused and status == COMPLETED:
        action = "reopen"
    if action is None or not ORDER_STATUS.can(status, action):
        return None
    order = orders.lock_order(session, order_id)  # already locked: loads the row
    now = utcnow()
    if action == "complete":
        order.completed_at = now
    elif action == "reopen":
        order.completed_at = None
    elif action == "all_refunded":
        order.refunded_at = now
    orders.set_status(session, order, action, by=by, reason=reason, now=now)
    return action


# --- 随时退 and 过期自动退 -----------------------------------------------------------------------


def _lock_vouchers(session: Session, order_id: int, codes: Sequence[str]) -> list[Voucher]:
    return list(
        session.scalars(
            select(Voucher)
            .where(Voucher.order_id == order_id, Voucher.code.in_(codes))
            .order_by(Voucher.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def refund_vouchers(
    session: Session,
    *,
    user_id: int,
    order_no: str,
    codes: Sequence[str],
    reason: str = "",
) -> Refund | None:
    """随时退: the consumer refunds unused vouchers of their order, instantly, if the offer
    promised ``refund_anytime``. One refund for the codes given (through the payment core's
    ``request_refund``); the vouchers are ``refunded`` at once, a future slot's capacity (and
    a deal's own stock) goes back. None only when the vouchers were free (nothing to pay back)."""
    wanted: list[str] = []
    for raw in codes:
        code = normalize_code(raw)
        if code is None:
            raise not_found()
        if code not in wanted:
            wanted.append(code)
    if not wanted:
        raise ValidationFailed("请选择要退款的券码", field="voucher_codes")
    found_order = orders.get_own_order(session, user_id, order_no)
    vouchers = _lock_vouchers(session, found_order.id, wanted)
    if len(vouchers) != len(wanted):
        raise not_found()
    now = utcnow()
    for voucher in vouchers:
        refusal = refusal_for_status(voucher.status, **_redeemed_extra(voucher))
        if refusal is not None:
            raise refusal
        if not voucher.refund_anytime:
            raise Conflict("该套餐不支持随时退", code="refund_not_allowed")
        if voucher.valid_until <= now and not voucher.auto_refund_on_expiry:
            raise expired_refusal()
    return refund_locked(
        session,
        found_order,
        vouchers,
        action="refund",
        reason=reason or "随时退",
        initiator=f"consumer:{user_id}",
        by=Who(USER, user_id),
        now=now,
    )


def _redeemed_extra(voucher: Voucher) -> dict[str, Any]:
    if voucher.status != REDEEMED:
        return {}
    return {
        "redeemed_at": voucher.redeemed_at.isoformat() if voucher.redeemed_at else None,
        "redeemed_store_id": voucher.redeemed_store_id,
    }


def refund_locked(
    session: Session,
    order: Order,
    vouchers: Sequence[Voucher],
    *,
    action: str,
    reason: str,
    initiator: str,
    now: datetime,
    by: Who,
) -> Refund | None:
    """Refund vouchers already locked and checked by the caller: one refund for their amounts
    (reserved per line by the payment core), vouchers → refunded, capacity back, order status."""
    per_line: dict[int, int] = {}
    for voucher in vouchers:
        per_line[voucher.order_line_id] = (
            per_line.get(voucher.order_line_id, 0) + voucher.amount_fen
        )
    refund = None
    parts = [(line_id, amount) for line_id, amount in sorted(per_line.items()) if amount > 0]
    if parts:
        refund = payments.request_refund(
            session,
            order,
            lines=parts,
            reason=reason,
            initiator=initiator,
            voucher_codes=[v.code for v in vouchers],
        )
    for voucher in vouchers:
        voucher.status = VOUCHER_STATUS.next_state(voucher.status, action)
        voucher.refunded_at = now
        voucher.refund_id = refund.id if refund else None
        voucher.updated_at = now
    session.flush()
    _give_back_capacity(session, vouchers, now)
    refresh_order_status(session, order.id, by=by, reason=reason)
    events.publish(
        session,
        events.VouchersRefunded(
            order_id=order.id,
            voucher_ids=tuple(v.id for v in vouchers),
            refund_id=refund.id if refund else None,
        ),
    )
    return refund


def _give_back_capacity(session: Session, vouchers: Sequence[Voucher], now: datetime) -> None:
    """A refunded unit was never consumed: a slot still in the future gets its capacity back
    (the slot can be sold again), and so does a deal's own stock."""
    per_line: dict[int, list[Voucher]] = {}
    for voucher in vouchers:
        per_line.setdefault(voucher.order_line_id, []).append(voucher)
    lines = {
        line.id: line
        for line in session.scalars(select(OrderLine).where(OrderLine.id.in_(sorted(per_line))))
    }
    hold_ids = [hid for line in lines.values() for hid in line.hold_ids]
    if not hold_ids:
        return
    holds = dict(
        session.execute(
            select(InventoryHold.id, InventoryHold.item_id).where(InventoryHold.id.in_(hold_ids))
        ).all()
    )
    slot_items = dict(
        session.execute(
            select(TimeSlot.id, TimeSlot.inventory_item_id).where(
                TimeSlot.id.in_([line.slot_id for line in lines.values() if line.slot_id])
            )
        ).all()
    )
    moves: list[tuple[int, int, int]] = []  # (item id, hold id, units): locked in item order
    for line_id, refunded in per_line.items():
        line = lines[line_id]
        slot_item = slot_items.get(line.slot_id) if line.slot_id else None
        slot_future = all(v.slot_starts_at is None or v.slot_starts_at > now for v in refunded)
        for hold_id in line.hold_ids:
            item_id = holds.get(hold_id)
            if item_id is None or (item_id == slot_item and not slot_future):
                continue
            moves.append((item_id, hold_id, len(refunded)))
    for _item_id, hold_id, units in sorted(moves):
        inventory.give_back(session, hold_id, quantity=units)


def expire_due(
    db: Database, settings: Settings, *, now: datetime | None = None, batch: int = 200
) -> int:
    """过期自动退 (the worker): unused vouchers past ``valid_until`` → expired, and refunded when
    the offer promised ``auto_refund_on_expiry``. Idempotent (only unused vouchers move, each
    once); safe with several workers (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, each takes other
    rows; SQLite: one writer at a time). Returns how many vouchers expired."""
    now = now or utcnow()
    moved = 0
    while True:
        with db.transaction() as session:
            due = list(
                session.scalars(
                    select(Voucher)
                    .where(Voucher.status == UNUSED, Voucher.valid_until <= now)
                    .order_by(Voucher.valid_until, Voucher.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
            )
            refund_ids = expire_locked(session, due, now)
            moved += len(due)
        for refund_id in refund_ids:
            try:
                payments.submit_refund(db, settings, refund_id)
            except Exception:
                log.exception("submitting refund %s failed; the refund sweep retries", refund_id)
        if len(due) < batch:
            return moved


def expire_locked(session: Session, vouchers: Sequence[Voucher], now: datetime) -> list[int]:
    """Expire locked unused vouchers; refund those whose offer says so. Refund ids created."""
    by_order: dict[int, list[Voucher]] = {}
    for voucher in vouchers:
        voucher.status = VOUCHER_STATUS.next_state(voucher.status, "expire")
        voucher.expired_at = now
        voucher.updated_at = now
        by_order.setdefault(voucher.order_id, []).append(voucher)
    session.flush()
    refund_ids: list[int] = []
    for order_id in sorted(by_order):
        to_refund = [v for v in by_order[order_id] if v.auto_refund_on_expiry]
        kept = [v for v in by_order[order_id] if not v.auto_refund_on_expiry]
        for group, is_kept in ((kept, True), (to_refund, False)):
            if group:
                events.publish(
                    session,
                    events.VouchersExpired(
                        order_id=order_id, voucher_ids=tuple(v.id for v in group), kept=is_kept
                    ),
                )
        if not to_refund:
            refresh_order_status(session, order_id, by=BY_WORKER)
            continue
        order = session.get(Order, order_id)
        assert order is not None
        savepoint = session.begin_nested()
        try:
            refund = refund_locked(
                session,
                order,
                to_refund,
                action="auto_refund",
                reason="券码过期自动退款",
                initiator="system:voucher_expired",
                now=now,
                by=BY_WORKER,
            )
        except AppError:
            # Stays expired: visible to the operator (logged), never retried in a loop.
            savepoint.rollback()
            log.exception("auto refund of expired vouchers of order %s failed", order_id)
            refresh_order_status(session, order_id, by=BY_WORKER)
            continue
        savepoint.commit()
        if refund is not None:
            refund_ids.append(refund.id)
    return refund_ids


def consumer_refund(
    db: Database,
    settings: Settings,
    *,
    user_id: int,
    order_no: str,
    codes: Sequence[str],
    reason: str = "",
    idempotency_key: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """随时退 over the API (``POST /vouchers/{code}/refund`` and ``POST /orders/{order_no}/refunds``
    with ``voucher_codes``): refund once per Idempotency-Key, then hand the refund to the
    provider right away (outside the transaction; the worker retries if that fails)."""

    def action(session: Session) -> tuple[int, dict[str, Any]]:
        refund = refund_vouchers(
            session, user_id=user_id, order_no=order_no, codes=codes, reason=reason
        )
        now = utcnow()
        return 201, {
            "refund_no": refund.refund_no if refund else "",
            "order_no": order_no,
            "amount_fen": refund.amount_fen if refund else 0,
            "status": refund.status if refund else "succeeded",
            "reason": refund.reason if refund else (reason or "随时退"),
            "created_at": (refund.created_at if refund else now).isoformat(),
            "voucher_codes": [normalize_code(c) for c in codes],
        }

    status, body = run_once(
        db,
        scope=f"refund:{user_id}:{order_no}",
        key=idempotency_key,
        payload={"voucher_codes": list(codes), "reason": reason},
        action=action,
    )
    body = dict(body)
    if body["refund_no"]:
        with db.transaction(readonly=True) as session:
            refund_id = session.scalar(
                select(Refund.id).where(Refund.refund_no == body["refund_no"])
            )
        if refund_id is not None:
            try:
                payments.submit_refund(db, settings, refund_id)
            except Exception:
                log.exception("submitting refund %s failed; the worker retries", body["refund_no"])
            with db.transaction(readonly=True) as session:
                body["status"] = session.scalar(select(Refund.status).where(Refund.id == refund_id))
    body["status_label"] = REFUND_STATUS.label(body["status"])
    return status, body
