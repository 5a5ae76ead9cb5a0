"""Domain events: what happened, as typed, immutable facts with a stable name and a version.

A domain publishes an event with ``publish(session, event)`` inside the transaction that made
the change. What reacts to it is decided in ONE place, ``o2o.wiring`` (the table of handlers):

- handlers *in the transaction* run right away, on the same session, and commit or roll back
  with the change (ledger postings, order-state follow-ups);
- handlers *after the commit* get an ``event_outbox`` row per (event, handler), written in the
  same transaction; the worker delivers it later (``o2o.outbox``), retried with backoff.

Events carry ids and plain values only (no ORM objects): the outbox stores them as JSON and a
handler loads what it needs (``session.get`` is an identity-map hit inside the transaction).
``name`` never changes once published; a field's meaning never changes within a ``version``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar, get_type_hints

from sqlalchemy.orm import Session

from o2o.timeutil import utcnow

# Who made a change happen (order history, after-sales, merchant review): the kinds of actor.
USER, STAFF, OPERATOR, PROVIDER, WORKER = "user", "staff", "operator", "provider", "worker"
ACTOR_KINDS = (USER, STAFF, OPERATOR, PROVIDER, WORKER)
ACTOR_LABELS = {USER: "顾客", STAFF: "商家", OPERATOR: "平台", PROVIDER: "支付机构", WORKER: "系统"}


@dataclass(frozen=True)
class Who:
    """The actor of a change: a consumer (user), merchant staff, the platform operator, the
    payment provider (a verified notification) or the worker (a timer)."""

    kind: str
    id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise ValueError(f"unknown actor kind {self.kind!r}")


BY_PROVIDER = Who(PROVIDER)
BY_WORKER = Who(WORKER)


def _new_event_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every domain event. ``event_id`` is unique per occurrence: with the handler's
    name it is the idempotency key of an after-commit delivery."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1

    event_id: str = field(default_factory=_new_event_id)
    occurred_at: datetime = field(default_factory=utcnow)

    def payload(self) -> dict[str, Any]:
        """JSON-ready fields (datetimes as ISO text, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


E = TypeVar("E", bound=Event)
EVENT_TYPES: dict[str, type[Event]] = {}


def _event(name: str, version: int = 1) -> Callable[[type[E]], type[E]]:
    """Register an event class under its stable name (a name is used once)."""

    def decorate(cls: type[E]) -> type[E]:
        if name in EVENT_TYPES:
            raise ValueError(f"event name {name!r} used twice")
        cls.name = name
        cls.version = version
        EVENT_TYPES[name] = cls
        return cls

    return decorate


def from_payload(name: str, payload: Mapping[str, Any]) -> Event:
    """The event back from its outbox row (datetimes parsed, lists back to tuples)."""
    cls = EVENT_TYPES[name]
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in payload:
            continue
        value = payload[f.name]
        hint = str(hints.get(f.name, ""))
        if value is not None and "datetime" in hint and isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif isinstance(value, list) and "tuple" in hint:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


# --- orders ------------------------------------------------------------------------------------


@_event("order.placed")
@dataclass(frozen=True, kw_only=True)
class OrderPlaced(Event):
    order_id: int
    order_no: str
    user_id: int
    merchant_id: int
    kind: str
    payable_fen: int


@_event("order.paid")
@dataclass(frozen=True, kw_only=True)
class OrderPaid(Event):
    """Also when a late payment revives a cancelled order (``revived``)."""

    order_id: int
    order_no: str
    user_id: int
    merchant_id: int
    kind: str
    payable_fen: int
    revived: bool = False


@_event("order.cancelled")
@dataclass(frozen=True, kw_only=True)
class OrderCancelled(Event):
    order_id: int
    order_no: str
    user_id: int
    merchant_id: int
    reason: str


@_event("order.completed")
@dataclass(frozen=True, kw_only=True)
class OrderCompleted(Event):
    order_id: int
    order_no: str
    user_id: int
    merchant_id: int
    kind: str


@_event("order.status_changed")
@dataclass(frozen=True, kw_only=True)
class OrderStatusChanged(Event):
    """Every move of ``Order.status`` (the order history row is written with it)."""

    order_id: int
    order_no: str
    merchant_id: int
    action: str
    from_status: str
    to_status: str
    actor_kind: str
    actor_id: int | None = None
    reason: str = ""


# --- payments and refunds -------------------------------------------------------------------


@_event("payment.succeeded")
@dataclass(frozen=True, kw_only=True)
class PaymentSucceeded(Event):
    """Exactly once per payment, whether its orders are then paid, revived or refunded."""

    payment_id: int
    payment_no: str
    amount_fen: int


@_event("refund.requested")
@dataclass(frozen=True, kw_only=True)
class RefundRequested(Event):
    refund_id: int
    refund_no: str
    order_id: int
    amount_fen: int
    initiator: str


@_event("refund.succeeded")
@dataclass(frozen=True, kw_only=True)
class RefundSucceeded(Event):
    refund_id: int
    refund_no: str
    order_id: int
    amount_fen: int


@_event("refund.failed")
@dataclass(frozen=True, kw_only=True)
class RefundFailed(Event):
    """The provider refused for good; the amount is free again."""

    refund_id: int
    refund_no: str
    order_id: int
    amount_fen: int
    error: str = ""


@_event("refund.retried")
@dataclass(frozen=True, kw_only=True)
class RefundRetried(Event):
    """A failed refund is sent again (same refund_no, amount reserved again)."""

    refund_id: int
    refund_no: str
    order_id: int


@_event("refund.abnormal")
@dataclass(frozen=True, kw_only=True)
class RefundAbnormal(Event):
    """退款异常: the money left the merchant account, the payer's account refused it."""

    refund_id: int
    refund_no: str
    order_id: int
    reason: str = ""


# --- vouchers ----------------------------------------------------------------------------------


@_event("voucher.issued")
@dataclass(frozen=True, kw_only=True)
class VouchersIssued(Event):
    order_id: int
    voucher_ids: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class _Redemption(Event):
    voucher_id: int
    code: str
    order_id: int
    order_no: str
    order_line_id: int
    listing_id: int
    merchant_id: int
    store_id: int
    amount_fen: int
    at: datetime
    by_user_id: int


@_event("voucher.redeemed")
@dataclass(frozen=True, kw_only=True)
class VoucherRedeemed(_Redemption):
    pass


@_event("voucher.undone")
@dataclass(frozen=True, kw_only=True)
class RedemptionUndone(_Redemption):
    """A manager took a redemption back: the voucher is unused again."""


@_event("voucher.refunded")
@dataclass(frozen=True, kw_only=True)
class VouchersRefunded(Event):
    """随时退 or 过期自动退 (``refund_id`` None: nothing was left to pay back)."""

    order_id: int
    voucher_ids: tuple[int, ...]
    refund_id: int | None = None


@_event("voucher.expired")
@dataclass(frozen=True, kw_only=True)
class VouchersExpired(Event):
    """Unused vouchers expired. ``kept``: their offer did not promise 过期自动退, so the money
    is the merchant's now; otherwise a refund follows (``voucher.refunded``)."""

    order_id: int
    voucher_ids: tuple[int, ...]
    kept: bool


# --- shipping and after-sales ---------------------------------------------------------------


@_event("parcel.shipped")
@dataclass(frozen=True, kw_only=True)
class ParcelShipped(Event):
    order_id: int
    order_no: str
    shipment_id: int
    carrier: str
    tracking_no: str


@_event("parcel.received")
@dataclass(frozen=True, kw_only=True)
class ParcelReceived(Event):
    """The consumer confirmed receipt, or the worker auto-confirmed it."""

    order_id: int
    order_no: str
    merchant_id: int
    automatic: bool = False


@_event("aftersales.opened")
@dataclass(frozen=True, kw_only=True)
class AfterSalesOpened(Event):
    request_id: int
    order_id: int
    amount_fen: int


@_event("aftersales.decided")
@dataclass(frozen=True, kw_only=True)
class AfterSalesDecided(Event):
    request_id: int
    order_id: int
    decision: str  # "approved" or "rejected"
    by_user_id: int | None = None


# --- merchants and settlement ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _MerchantEvent(Event):
    merchant_id: int
    by_user_id: int | None = None
    reason: str = ""


@_event("merchant.applied")
@dataclass(frozen=True, kw_only=True)
class MerchantApplied(_MerchantEvent):
    pass


@_event("merchant.approved")
@dataclass(frozen=True, kw_only=True)
class MerchantApproved(_MerchantEvent):
    pass


@_event("merchant.rejected")
@dataclass(frozen=True, kw_only=True)
class MerchantRejected(_MerchantEvent):
    pass


@_event("merchant.suspended")
@dataclass(frozen=True, kw_only=True)
class MerchantSuspended(_MerchantEvent):
    pass


@_event("statement.generated")
@dataclass(frozen=True, kw_only=True)
class StatementGenerated(Event):
    statement_id: int
    merchant_id: int
    amount_fen: int


@_event("statement.paid")
@dataclass(frozen=True, kw_only=True)
class StatementPaid(Event):
    statement_id: int
    merchant_id: int
    amount_fen: int


# --- publishing ---------------------------------------------------------------------------------

InTransactionHandler = Callable[[Session, Any], None]


@dataclass
class Dispatch:
    """What ``publish`` does with an event: built by ``o2o.wiring.install`` from its table."""

    in_transaction: dict[type[Event], list[InTransactionHandler]]
    # Names of the after-commit handlers per event type; ``enqueue`` writes their outbox rows.
    after_commit: dict[type[Event], list[str]]
    enqueue: Callable[[Session, Event, Iterable[str]], None]


_dispatch: Dispatch | None = None


def configure(dispatch: Dispatch | None) -> None:
    global _dispatch
    _dispatch = dispatch


def current() -> Dispatch:
    if _dispatch is None:
        # Loud on purpose: an unwired process would silently skip ledger postings.
        raise RuntimeError("events are not wired: call o2o.wiring.install() at start-up")
    return _dispatch


def publish(session: Session, event: Event) -> None:
    """Inside the transaction of the change: run the in-transaction handlers now and write the
    outbox rows of the after-commit ones (both roll back with the change)."""
    dispatch = current()
    for handler in dispatch.in_transaction.get(type(event), ()):
        handler(session, event)
    after = dispatch.after_commit.get(type(event))
    if after:
        dispatch.enqueue(session, event, after)
