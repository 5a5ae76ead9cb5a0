"""Who reacts to which domain event: the one table (read this to find every reaction to
"order paid"). ``install()`` is called at start-up by the app (``create_app``), the worker
(``load_jobs``) and the CLI; the tests call it once per process too.

- ``IN_TRANSACTION``: run by ``events.publish`` inside the transaction of the change, in the
  order listed; they commit or roll back with it (ledger postings, follow-up state moves).
- ``AFTER_COMMIT``: named handlers delivered later by the worker from ``event_outbox`` (written
  in the same transaction), at least once, retried with backoff; a handler gets the
  ``Delivery`` whose ``key`` is stable across retries (its idempotency key). Add webhooks,
  notifications and search updates here — never anything that must roll back with the change.

The other domains' hooks into the payment core (the full-refund veto and the profit-sharing
applier) are set here as well, so nothing is registered as a side effect of an import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from o2o import events
from o2o.events import Event

InTransaction = Callable[[Any, Any], None]  # (session, event)
# (session, event, delivery): runs in the delivering transaction; raise to have it retried.
AfterCommit = Callable[[Any, Any, Any], None]


def in_transaction_table() -> dict[type[Event], list[InTransaction]]:
    from o2o.fulfilment import vouchers
    from o2o.ledger import postings
    from o2o.shipping import aftersales

    return {
        # The money is here: posted before any order is paid, revived or refunded.
        events.PaymentSucceeded: [postings.on_payment_succeeded],
        events.OrderPaid: [vouchers.on_order_paid],
        events.VoucherRedeemed: [postings.on_voucher_redeemed],
        events.RedemptionUndone: [postings.on_redemption_undone],
        events.VouchersExpired: [postings.on_vouchers_expired],
        events.ParcelReceived: [postings.on_goods_received],
        events.RefundSucceeded: [postings.on_refund_succeeded, aftersales.on_refund_succeeded],
        events.RefundFailed: [aftersales.on_refund_failed],
        events.RefundRetried: [aftersales.on_refund_retried],
    }


def after_commit_table() -> dict[type[Event], dict[str, AfterCommit]]:
    """Event type → {handler name: handler}. The name is stored in the outbox row: renaming a
    handler orphans its pending deliveries (they show as failed, unknown handler)."""
    return {}


# --- installing ---------------------------------------------------------------------------------

_in_transaction: dict[type[Event], list[InTransaction]] = {}
_after_commit: dict[type[Event], dict[str, AfterCommit]] = {}
_installed = False


def install() -> None:
    """Build the dispatch from the tables; once per process (later calls keep it as it is)."""
    global _installed
    if _installed:
        return
    from o2o.outbox import service as outbox
    from o2o.payments import service as payments
    from o2o.settlement import sharing
    from o2o.shipping import service as shipping

    _in_transaction.clear()
    _in_transaction.update({k: list(v) for k, v in in_transaction_table().items()})
    _after_commit.clear()
    _after_commit.update({k: dict(v) for k, v in after_commit_table().items()})
    payments.full_refund_checks = (shipping.refuse_full_refund_once_shipped,)
    payments.profit_sharing_applier = sharing.on_profit_sharing_event
    _reconfigure(outbox.enqueue)
    _installed = True


def _reconfigure(enqueue: Callable[..., None] | None = None) -> None:
    if enqueue is None:
        enqueue = events.current().enqueue
    events.configure(
        events.Dispatch(
            in_transaction=_in_transaction,
            after_commit={k: list(v) for k, v in _after_commit.items() if v},
            enqueue=enqueue,
        )
    )


def after_commit_handler(event_name: str, handler_name: str) -> AfterCommit | None:
    """The handler an outbox row names (None: not wired in this process)."""
    cls = events.EVENT_TYPES.get(event_name)
    return _after_commit.get(cls, {}).get(handler_name) if cls else None


def table() -> list[tuple[str, str, str]]:
    """(event name, when, handler) for every wired reaction: the operator's map."""
    rows = []
    for cls, handlers in _in_transaction.items():
        rows += [(cls.name, "in_transaction", _qualname(h)) for h in handlers]
    for cls, named in _after_commit.items():
        rows += [(cls.name, "after_commit", name) for name in named]
    return sorted(rows)


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{getattr(fn, '__qualname__', repr(fn))}"


# --- for tests: a handler added or taken away for the duration of a block --------------------


@contextmanager
def extra_in_transaction(event_type: type[Event], handler: InTransaction) -> Iterator[None]:
    _in_transaction.setdefault(event_type, []).append(handler)
    try:
        yield
    finally:
        _in_transaction[event_type].remove(handler)


@contextmanager
def without_in_transaction(event_type: type[Event], handler: InTransaction) -> Iterator[None]:
    handlers = _in_transaction[event_type]
    position = handlers.index(handler)
    handlers.remove(handler)
    try:
        yield
    finally:
        handlers.insert(position, handler)


@contextmanager
def extra_after_commit(
    subscriptions: Mapping[type[Event], Mapping[str, AfterCommit]],
) -> Iterator[None]:
    for event_type, named in subscriptions.items():
        _after_commit.setdefault(event_type, {}).update(named)
    _reconfigure()
    try:
        yield
    finally:
        for event_type, named in subscriptions.items():
            for name in named:
                _after_commit[event_type].pop(name, None)
        _reconfigure()


def handler_names(event_type: type[Event]) -> Sequence[str]:
    return list(_after_commit.get(event_type, {}))
