"""售后: return/refund requests on received goods orders.

A consumer opens a request within ``AFTER_SALES_DAYS`` of receipt for some lines and an amount
no larger than what is still refundable on them; the merchant approves (the money goes back
through the payment core's ``request_refund``) or rejects with a reason; the consumer may cancel
while it waits. A request unanswered for ``RESPOND_WITHIN`` is approved by the worker. The
request becomes ``refunded`` when the refund succeeds at the provider (a ``refund.succeeded``
handler, see ``o2o.wiring``, with a sweep as a safety net). Statuses move only along ``AFTER_SALES_STATUS``.

Locks: always the order row first (``orders.lock_order``), then the request row, on every path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from o2o import events
from o2o.accounts.models import User
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import AppError, Conflict, InvalidTransition, NotFound, ValidationFailed
from o2o.merchants.access import MANAGERS, Actor
from o2o.money import split_proportionally
from o2o.orders import service as orders
from o2o.orders.models import COMPLETED, GOODS, ORDER_STATUS, Order, OrderLine
from o2o.payments import service as payments
from o2o.payments.models import REFUND_FAILED as REFUND_STATUS_FAILED
from o2o.payments.models import REFUND_STATUS, REFUND_SUCCEEDED, Refund
from o2o.shipping.models import (
    AFTER_SALES_KIND_LABELS,
    AFTER_SALES_KINDS,
    AFTER_SALES_STATUS,
    APPROVED,
    REFUND_FAILED,
    REQUESTED,
    AfterSalesLine,
    AfterSalesRequest,
)
from o2o.timeutil import utcnow

log = logging.getLogger(__name__)

AFTER_SALES_DAYS = 7
RESPOND_WITHIN = timedelta(hours=48)
# An automatic approval the payment core refused (e.g. nothing left to refund) is retried later.
AUTO_APPROVE_RETRY = timedelta(hours=1)
TIMEOUT_DECIDER = "system:timeout"
# A refund the provider refused (e.g. the merchant's balance was short) is sent again by the
# worker this long after it failed, while it has had fewer than this many attempts; after that
# it waits in ``refund_failed`` for the operator (refund console: retry).
REFUND_RETRY_AFTER = timedelta(hours=1)
REFUND_AUTO_ATTEMPTS = 5
# Lines of a request in these statuses cannot be asked for again (the money is not back yet).
OPEN_STATUSES = (REQUESTED, REFUND_FAILED)


# --- loading ------------------------------------------------------------------------------------


def _lock_request(session: Session, request_id: int) -> AfterSalesRequest:
    request = session.scalar(
        select(AfterSalesRequest)
        .where(AfterSalesRequest.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert request is not None
    return request


def _own_request(session: Session, user_id: int, request_id: int) -> AfterSalesRequest:
    request = session.get(AfterSalesRequest, request_id)
    if request is None or request.user_id != user_id:
        raise NotFound("售后申请不存在", code="after_sales_not_found")
    return request


def _merchant_request(
    session: Session, actor: Actor, merchant_id: int, request_id: int
) -> AfterSalesRequest:
    actor.require_staff(merchant_id, MANAGERS)
    request = session.get(AfterSalesRequest, request_id)
    if request is None or request.merchant_id != merchant_id:
        raise NotFound("售后申请不存在", code="after_sales_not_found")
    return request


def _move(request: AfterSalesRequest, action: str, now: datetime) -> None:
    request.status = AFTER_SALES_STATUS.next_state(request.status, action)
    request.updated_at = now


# --- the consumer -------------------------------------------------------------------------------


def open_request(
    session: Session,
    user_id: int,
    order_no: str,
    *,
    kind: str,
    reason: str,
    line_ids: Sequence[int],
    amount_fen: int,
    now: datetime | None = None,
) -> AfterSalesRequest:
    """申请售后 for some lines of a received goods order, within the after-sales window."""
    now = now or utcnow()
    if kind not in AFTER_SALES_KINDS:
        raise ValidationFailed("售后类型无效", field="kind")
    if not line_ids:
        raise ValidationFailed("请选择要售后的商品", field="line_ids")
    if amount_fen < 1:
        raise ValidationFailed("退款金额必须大于 0", field="amount_fen")
    found = orders.get_own_order(session, user_id, order_no)
    if found.kind != GOODS:
        raise Conflict("团购订单请按券码申请退款", code="not_goods_order")
    order = orders.lock_order(session, found.id)
    if order.status != COMPLETED or order.completed_at is None:
        raise InvalidTransition(
            f"订单当前状态为「{ORDER_STATUS.label(order.status)}」，确认收货后才能申请售后",
            code="not_received",
            current_status=order.status,
            action="after_sales",
        )
    if now > order.completed_at + timedelta(days=AFTER_SALES_DAYS):
        raise Conflict(
            f"已超过收货后 {AFTER_SALES_DAYS} 天的售后期限", code="after_sales_window_closed"
        )
    by_id = {line.id: line for line in orders.lines_by_order(session, [order.id])[order.id]}
    chosen: list[OrderLine] = []
    for line_id in dict.fromkeys(line_ids):
        line = by_id.get(line_id)
        if line is None:
            raise ValidationFailed("订单中没有该商品", code="line_not_in_order", field="line_ids")
        chosen.append(line)
    busy = session.scalar(
        select(AfterSalesLine.order_line_id)
        .join(AfterSalesRequest, AfterSalesRequest.id == AfterSalesLine.request_id)
        .where(
            AfterSalesRequest.order_id == order.id,
            AfterSalesRequest.status.in_(OPEN_STATUSES),
            AfterSalesLine.order_line_id.in_([line.id for line in chosen]),
        )
        .limit(1)
    )
    if busy is not None:
        raise Conflict(
            f"「{by_id[busy].title}」已有待处理的售后申请", code="after_sales_already_open"
        )
    remaining = [line.amount_fen - line.refunded_fen for line in chosen]
    for line, left in zip(chosen, remaining, strict=True):
        if left <= 0:
            raise Conflict(f"「{line.title}」已全部退款", code="nothing_to_refund")
    refundable = sum(remaining)
    if amount_fen > refundable:
        raise ValidationFailed(
            f"退款金额不能超过可退金额 {refundable} 分",
            code="amount_exceeds_refundable",
            field="amount_fen",
            refundable_fen=refundable,
        )
    request = AfterSalesRequest(
        order_id=order.id,
        user_id=user_id,
        merchant_id=order.merchant_id,
        kind=kind,
        status=REQUESTED,
        reason=reason[:200],
        amount_fen=amount_fen,
        respond_by=now + RESPOND_WITHIN,
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    # Each line's share is proportional to what is left on it (exact: largest remainder).
    for line, part in zip(chosen, split_proportionally(amount_fen, remaining), strict=True):
        if part > 0:
            session.add(
                AfterSalesLine(request_id=request.id, order_line_id=line.id, amount_fen=part)
            )
    session.flush()
    events.publish(
        session,
        events.AfterSalesOpened(
            request_id=request.id, order_id=request.order_id, amount_fen=amount_fen
        ),
    )
    return request


def cancel_request(
    session: Session, user_id: int, request_id: int, *, now: datetime | None = None
) -> AfterSalesRequest:
    """The consumer withdraws a request the merchant has not answered yet."""
    now = now or utcnow()
    found = _own_request(session, user_id, request_id)
    orders.lock_order(session, found.order_id)
    request = _lock_request(session, found.id)
    _move(request, "cancel", now)
    request.cancelled_at = now
    session.flush()
    return request


# --- the merchant -------------------------------------------------------------------------------


def _approve(
    session: Session, request: AfterSalesRequest, decided_by: str, now: datetime
) -> Refund:
    """requested → approved, and the refund for its lines (reserved now, sent after commit)."""
    _move(request, "approve", now)
    order = session.get(Order, request.order_id)
    assert order is not None
    parts = session.scalars(
        select(AfterSalesLine)
        .where(AfterSalesLine.request_id == request.id)
        .order_by(AfterSalesLine.order_line_id)
    ).all()
    refund = payments.request_refund(
        session,
        order,
        lines=[(p.order_line_id, p.amount_fen) for p in parts],
        reason=f"售后{AFTER_SALES_KIND_LABELS[request.kind]}：{request.reason}"[:200],
        initiator=decided_by,
    )
    request.refund_id = refund.id
    request.decided_by = decided_by
    request.decided_at = now
    session.flush()
    _publish_decided(session, request)
    return refund


def _publish_decided(session: Session, request: AfterSalesRequest) -> None:
    by = request.decided_by or ""
    events.publish(
        session,
        events.AfterSalesDecided(
            request_id=request.id,
            order_id=request.order_id,
            decision=request.status,
            by_user_id=int(by.split(":")[1]) if by.startswith("merchant:") else None,
        ),
    )


def approve(
    session: Session,
    actor: Actor,
    merchant_id: int,
    request_id: int,
    *,
    now: datetime | None = None,
) -> AfterSalesRequest:
    """同意: the money goes back through the payment core. Send ``request.refund_id`` with
    ``payments.submit_refund`` after the commit (the worker's refund sweep does it otherwise)."""
    now = now or utcnow()
    found = _merchant_request(session, actor, merchant_id, request_id)
    orders.lock_order(session, found.order_id)
    request = _lock_request(session, found.id)
    _approve(session, request, f"merchant:{actor.user_id}", now)
    return request


def reject(
    session: Session,
    actor: Actor,
    merchant_id: int,
    request_id: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> AfterSalesRequest:
    """拒绝, with a reason the consumer sees."""
    now = now or utcnow()
    if not reason.strip():
        raise ValidationFailed("请填写拒绝原因", field="reason")
    found = _merchant_request(session, actor, merchant_id, request_id)
    orders.lock_order(session, found.order_id)
    request = _lock_request(session, found.id)
    _move(request, "reject", now)
    request.reject_reason = reason.strip()[:200]
    request.decided_by = f"merchant:{actor.user_id}"
    request.decided_at = now
    session.flush()
    _publish_decided(session, request)
    return request


# --- the worker and the payment core -------------------------------------------------------------


def auto_approve(
    db: Database, settings: Settings, *, now: datetime | None = None, batch: int = 50
) -> int:
    """Approve requests unanswered past ``respond_by``, each in its own transaction (order row,
    then the request row with SKIP LOCKED so several workers share the work), then send the
    refunds. Idempotent: only ``requested`` rows qualify."""
    now = now or utcnow()
    with db.transaction(readonly=True) as session:
        due = session.execute(
            select(AfterSalesRequest.id, AfterSalesRequest.order_id)
            .where(AfterSalesRequest.status == REQUESTED, AfterSalesRequest.respond_by <= now)
            .order_by(AfterSalesRequest.respond_by, AfterSalesRequest.id)
            .limit(batch)
        ).all()
    refund_ids: list[int] = []
    for request_id, order_id in due:
        try:
            with db.transaction() as session:
                orders.lock_order(session, order_id)
                request = session.scalar(
                    select(AfterSalesRequest)
                    .where(
                        AfterSalesRequest.id == request_id,
                        AfterSalesRequest.status == REQUESTED,
                        AfterSalesRequest.respond_by <= now,
                    )
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
                if request is None:
                    continue  # answered meanwhile, or another worker has it
                refund_ids.append(_approve(session, request, TIMEOUT_DECIDER, now).id)
        except AppError as exc:
            log.warning("auto-approving after-sales %s refused: %s", request_id, exc.detail)
            with db.transaction() as session:
                session.execute(
                    update(AfterSalesRequest)
                    .where(AfterSalesRequest.id == request_id)
                    .values(respond_by=now + AUTO_APPROVE_RETRY)
                    .execution_options(synchronize_session=False)
                )
    for refund_id in refund_ids:
        send_refund(db, settings, refund_id)
    return len(refund_ids) + sync_refunded(db, now=now)


def send_refund(db: Database, settings: Settings, refund_id: int) -> None:
    """Hand a new refund to its provider now; failures are retried by the refund sweep."""
    try:
        payments.submit_refund(db, settings, refund_id)
    except Exception:
        log.exception("submitting refund %s failed; the worker retries", refund_id)


def _mark_refunded(session: Session, request: AfterSalesRequest, now: datetime) -> None:
    _move(request, "refund_succeeded", now)
    request.refunded_at = now


def _locked_request_of(session: Session, refund: Refund) -> AfterSalesRequest | None:
    """The after-sales request this refund pays out, locked (None: the refund is not one)."""
    return session.scalar(
        select(AfterSalesRequest)
        .where(AfterSalesRequest.refund_id == refund.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _refund_of(session: Session, refund_id: int) -> Refund:
    refund = session.get(Refund, refund_id)  # locked by the payment core
    assert refund is not None
    return refund


def on_refund_succeeded(session: Session, event: events.RefundSucceeded) -> None:
    """``refund.succeeded`` (in the transaction): an approved request's refund has succeeded."""
    refund = _refund_of(session, event.refund_id)
    request = _locked_request_of(session, refund)
    if request is not None and request.status == APPROVED:
        _mark_refunded(session, request, refund.succeeded_at or utcnow())
        session.flush()


def on_refund_failed(session: Session, event: events.RefundFailed) -> None:
    """``refund.failed``: the provider refused an approved request's refund for good (the
    amount is free again). The request says so instead of staying "approved"."""
    refund = _refund_of(session, event.refund_id)
    request = _locked_request_of(session, refund)
    if request is not None and request.status == APPROVED:
        _move(request, "refund_failed", refund.failed_at or utcnow())
        session.flush()
        log.warning("after-sales %s: refund %s failed", request.id, refund.refund_no)


def on_refund_retried(session: Session, event: events.RefundRetried) -> None:
    """``refund.retried``: a failed refund is on its way again (operator or worker)."""
    refund = _refund_of(session, event.refund_id)
    request = _locked_request_of(session, refund)
    if request is not None and request.status == REFUND_FAILED:
        _move(request, "retry_refund", refund.updated_at or utcnow())
        session.flush()


def retry_failed_refunds(
    db: Database, settings: Settings, *, now: datetime | None = None, batch: int = 50
) -> int:
    """Send refused after-sales refunds again (same refund_no) ``REFUND_RETRY_AFTER`` after they
    failed, up to ``REFUND_AUTO_ATTEMPTS`` attempts; later ones wait for the operator. Each in
    its own transaction, locks in the usual order (order, request, refund)."""
    now = now or utcnow()
    with db.transaction(readonly=True) as session:
        due = session.execute(
            select(AfterSalesRequest.id, AfterSalesRequest.order_id, Refund.refund_no)
            .join(Refund, Refund.id == AfterSalesRequest.refund_id)
            .where(
                AfterSalesRequest.status == REFUND_FAILED,
                Refund.status == REFUND_STATUS_FAILED,
                Refund.failed_at <= now - REFUND_RETRY_AFTER,
                Refund.attempts < REFUND_AUTO_ATTEMPTS,
            )
            .order_by(Refund.failed_at, AfterSalesRequest.id)
            .limit(batch)
        ).all()
    refund_ids: list[int] = []
    for request_id, order_id, refund_no in due:
        try:
            with db.transaction() as session:
                orders.lock_order(session, order_id)
                request = session.scalar(
                    select(AfterSalesRequest)
                    .where(
                        AfterSalesRequest.id == request_id,
                        AfterSalesRequest.status == REFUND_FAILED,
                    )
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
                if request is None:
                    continue  # retried meanwhile, or another worker has it
                # Moves the refund back to pending; the listener above re-opens the request.
                refund_ids.append(payments.retry_refund(session, refund_no).id)
        except AppError as exc:  # e.g. the amount no longer fits: the operator decides
            log.warning("retrying the refund of after-sales %s refused: %s", request_id, exc.detail)
    for refund_id in refund_ids:
        send_refund(db, settings, refund_id)
    return len(refund_ids)


def sync_refunded(db: Database, *, now: datetime | None = None, batch: int = 100) -> int:
    """Safety net for the listener: approved requests whose refund has succeeded."""
    now = now or utcnow()
    with db.transaction() as session:
        due = session.scalars(
            select(AfterSalesRequest)
            .join(Refund, Refund.id == AfterSalesRequest.refund_id)
            .where(AfterSalesRequest.status == APPROVED, Refund.status == REFUND_SUCCEEDED)
            .limit(batch)
            .with_for_update(of=AfterSalesRequest, skip_locked=True)
            .execution_options(populate_existing=True)
        ).all()
        for request in due:
            _mark_refunded(session, request, now)
        return len(due)


# --- reading ------------------------------------------------------------------------------------


def list_for_consumer(
    session: Session,
    user_id: int,
    *,
    status: str | None = None,
    limit: int = 20,
    before_id: int | None = None,
) -> Sequence[AfterSalesRequest]:
    stmt = (
        select(AfterSalesRequest)
        .where(AfterSalesRequest.user_id == user_id)
        .order_by(AfterSalesRequest.id.desc())
        .limit(limit)
    )
    if status:
        stmt = stmt.where(AfterSalesRequest.status == status)
    if before_id:
        stmt = stmt.where(AfterSalesRequest.id < before_id)
    return session.scalars(stmt).all()


def list_for_merchant(
    session: Session,
    actor: Actor,
    merchant_id: int,
    *,
    status: str | None = None,
    limit: int = 20,
    before_id: int | None = None,
) -> Sequence[AfterSalesRequest]:
    actor.require_staff(merchant_id, MANAGERS)
    stmt = (
        select(AfterSalesRequest)
        .where(AfterSalesRequest.merchant_id == merchant_id)
        .order_by(AfterSalesRequest.id.desc())
        .limit(limit)
    )
    if status:
        stmt = stmt.where(AfterSalesRequest.status == status)
    if before_id:
        stmt = stmt.where(AfterSalesRequest.id < before_id)
    return session.scalars(stmt).all()


def _mask(name: str) -> str:
    return (name[:1] + "**") if name else "匿名用户"


def requests_out(
    session: Session, requests: Sequence[AfterSalesRequest], *, staff: bool = False
) -> list[dict[str, Any]]:
    ids = [r.id for r in requests]
    if not ids:
        return []
    order_nos = dict(
        session.execute(
            select(Order.id, Order.order_no).where(Order.id.in_({r.order_id for r in requests}))
        ).all()
    )
    lines: dict[int, list[dict[str, Any]]] = {rid: [] for rid in ids}
    for part, title in session.execute(
        select(AfterSalesLine, OrderLine.title)
        .join(OrderLine, OrderLine.id == AfterSalesLine.order_line_id)
        .where(AfterSalesLine.request_id.in_(ids))
        .order_by(AfterSalesLine.order_line_id)
    ):
        lines[part.request_id].append(
            {"line_id": part.order_line_id, "title": title, "amount_fen": part.amount_fen}
        )
    refund_ids = [r.refund_id for r in requests if r.refund_id]
    refunds = (
        {r.id: r for r in session.scalars(select(Refund).where(Refund.id.in_(refund_ids)))}
        if refund_ids
        else {}
    )
    names: dict[int, str] = {}
    if staff:
        names = dict(
            session.execute(
                select(User.id, User.name).where(User.id.in_({r.user_id for r in requests}))
            ).all()
        )
    result = []
    for r in requests:
        refund = refunds.get(r.refund_id) if r.refund_id else None
        item: dict[str, Any] = {
            "id": r.id,
            "order_no": order_nos[r.order_id],
            "merchant_id": r.merchant_id,
            "kind": r.kind,
            "kind_label": AFTER_SALES_KIND_LABELS[r.kind],
            "status": r.status,
            "status_label": AFTER_SALES_STATUS.label(r.status),
            "reason": r.reason,
            "amount_fen": r.amount_fen,
            "lines": lines[r.id],
            "reject_reason": r.reject_reason,
            "respond_by": r.respond_by,
            "created_at": r.created_at,
            "decided_at": r.decided_at,
            "decided_automatically": r.decided_by == TIMEOUT_DECIDER,
            "cancelled_at": r.cancelled_at,
            "refunded_at": r.refunded_at,
            "refund": None
            if refund is None
            else {
                "refund_no": refund.refund_no,
                "amount_fen": refund.amount_fen,
                "status": refund.status,
                "status_label": REFUND_STATUS.label(refund.status),
            },
        }
        if staff:
            item["consumer_name"] = _mask(names.get(r.user_id, ""))
        result.append(item)
    return result
