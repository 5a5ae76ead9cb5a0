"""核销: staff preview a voucher, redeem it at a store, and (managers) undo a mistake.

Law 2 (DESIGN.md): a voucher is redeemed at most once, only by staff of its merchant, only at a
store the offer lists, only while it is valid, paid and not refunded. The redemption itself is
ONE conditional UPDATE (``… WHERE id = :v AND status = 'unused' AND merchant_id = :m AND
valid_until > :now AND slot window …``): of concurrent redemptions of one code, exactly one
changes a row; the others find it redeemed and get 409 with when and where.

Guessing is expensive: every attempt is counted per staff member and per store *before* the code
is looked at (``o2o.ratelimit``: one atomic statement, in its own transaction so a rollback cannot
erase it); attempts about a real voucher are handed back afterwards, so only unknown codes stay
counted. Past a limit every attempt is 429, and of any number of concurrent guesses at most the
limit are evaluated. Every attempt — success, refusal, throttled, replayed — is audited in
``redemption_attempts``. The hot path is SQLAlchemy Core: one read of the voucher with its order
and title, the conditional update, the order's completion check, one audit insert.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from o2o import events, ratelimit
from o2o.accounts.models import User
from o2o.db import Database
from o2o.errors import AppError, Conflict, Forbidden, TooManyRequests, ValidationFailed
from o2o.events import STAFF, Who
from o2o.fulfilment.models import (
    ACTION_PREVIEW,
    ACTION_REDEEM,
    ACTION_UNDO,
    MAX_TRIED_CODE,
    REDEEMED,
    RESULT_OK,
    UNUSED,
    VOUCHER_STATUS,
    RedemptionAttempt,
    Voucher,
)
from o2o.fulfilment.vouchers import (
    RedemptionSettings,
    expired_refusal,
    format_code,
    mask_phone,
    normalize_code,
    not_found,
    redemption_settings,
    refresh_order_status,
    refusal_for_status,
)
from o2o.idempotency import run_once
from o2o.merchants.access import CLERK, MANAGERS, Actor
from o2o.merchants.models import Store
from o2o.orders.models import Order, OrderLine
from o2o.timeutil import format_china, utcnow

THROTTLE_WINDOW = timedelta(minutes=1)
# Refusals that look like guessing (the code does not exist for this merchant) count towards
# the throttle. Refusals about a real voucher (already redeemed, wrong store …) do not: 20
# clerks scanning one code at once must get 409s, not lock themselves out.
GUESSING = frozenset({"voucher_not_found"})

_V = Voucher.__table__.c
_O = Order.__table__.c
_L = OrderLine.__table__.c


# --- throttling and audit ------------------------------------------------------------------


def _throttle_keys(user_id: int, store_id: int | None) -> list[str]:
    keys = [f"redeem:staff:{user_id}"]
    if store_id is not None:
        keys.append(f"redeem:store:{store_id}")
    return keys


def _throttled(detail: str) -> TooManyRequests:
    return TooManyRequests(
        detail,
        code="redemption_throttled",
        headers={"Retry-After": str(int(THROTTLE_WINDOW.total_seconds()))},
    )


def reserve_attempt(
    db: Database, user_id: int, store_id: int | None, rules: RedemptionSettings
) -> list[str]:
    """Count this attempt before the code is looked at (one atomic statement per key, so of
    any number of concurrent attempts at most the limit are evaluated); 429 past a limit. The
    caller hands it back (:func:`release_attempt`) unless the code turned out unknown."""
    keys = _throttle_keys(user_id, store_id)
    limits = [
        rules.redemption_staff_failures_per_minute,
        rules.redemption_store_failures_per_minute,
    ]
    counters = ratelimit.counters(db, rules)
    counts = counters.hit(keys, int(THROTTLE_WINDOW.total_seconds()))
    over = [n > limit for n, limit in zip(counts, limits, strict=False)]
    if any(over):
        # Refused: it counts only against the limit that refused it (a clerk hammering past
        # its own limit must not use up its store's).
        counters.refund([k for k, o in zip(keys, over, strict=True) if not o])
        raise _throttled(
            "核销失败次数过多，请稍后再试" if over[0] else "本门店核销失败次数过多，请稍后再试"
        )
    return keys


def release_attempt(db: Database, keys: list[str], rules: RedemptionSettings) -> None:
    ratelimit.counters(db, rules).refund(keys)


def _audit_row(
    *,
    merchant_id: int,
    user_id: int,
    store_id: int | None,
    code: str,
    action: str,
    result: str,
    voucher_id: int | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "merchant_id": merchant_id,
        "store_id": store_id,
        "user_id": user_id,
        "action": action,
        "code": code[:MAX_TRIED_CODE],
        "voucher_id": voucher_id,
        "result": result[:40],
        "reason": reason[:200],
        "created_at": at or utcnow(),
    }


def _record_outside(db: Database, row: dict[str, Any]) -> None:
    """Audit a refusal in its own transaction: the request's own transaction has rolled back."""
    with db.transaction() as session:
        session.execute(insert(RedemptionAttempt.__table__), row)


def _store_id_or_none(store_id: Any) -> int | None:
    return store_id if isinstance(store_id, int) and 0 < store_id < 2**62 else None


# --- preview -------------------------------------------------------------------------------


def _voucher_query() -> Any:
    return (
        select(
            _V.id,
            _V.code,
            _V.status,
            _V.store_ids,
            _V.valid_from,
            _V.valid_until,
            _V.slot_id,
            _V.slot_store_id,
            _V.slot_starts_at,
            _V.slot_ends_at,
            _V.redeemed_at,
            _V.redeemed_store_id,
            _V.order_id,
            _V.order_line_id,
            _V.listing_id,
            _V.amount_fen,
            _V.user_id,
            _O.order_no,
            _L.title,
            _L.quantity,
        )
        .join(Order.__table__, _O.id == _V.order_id)
        .join(OrderLine.__table__, _L.id == _V.order_line_id)
    )


# Built once (the hot path runs them on every call). Bind names differ from column names: an
# UPDATE reserves those for its SET values.
_BY_CODE = _voucher_query().where(_V.code == bindparam("code"), _V.merchant_id == bindparam("m_id"))
_BY_ID = _voucher_query().where(_V.id == bindparam("v_id"))
_REDEEM = (
    update(Voucher.__table__)
    .where(
        _V.id == bindparam("v_id"),
        _V.merchant_id == bindparam("m_id"),
        _V.status.in_(VOUCHER_STATUS.sources_of("redeem")),
        _V.valid_until > bindparam("now"),
        or_(_V.slot_starts_at.is_(None), _V.slot_starts_at <= bindparam("opens_by")),
    )
    .values(
        status=VOUCHER_STATUS.next_state(UNUSED, "redeem"),
        redeemed_at=bindparam("now"),
        redeemed_store_id=bindparam("at_store"),
        redeemed_by=bindparam("by_user"),
        updated_at=bindparam("now"),
    )
)
_AUDIT = insert(RedemptionAttempt.__table__)
_PREVIEW = (
    _voucher_query()
    .add_columns(User.phone)
    .join(User, User.id == _V.user_id)
    .where(_V.code == bindparam("code"), _V.merchant_id == bindparam("m_id"))
)
_UNUSED_OF_LINE = select(func.count()).where(
    _V.order_line_id == bindparam("line_id"), _V.status == UNUSED
)


def preview(
    db: Database, actor: Actor, merchant_id: int, raw_code: str, *, rules: RedemptionSettings | None
) -> dict[str, Any]:
    """What a clerk sees before redeeming: title, units, validity, slot, the holder's masked
    phone, status. Only this merchant's vouchers: another merchant's code is 404 exactly like
    an unknown one. A clerk sees vouchers usable at one of its stores."""
    rules = rules or redemption_settings()
    role = actor.require_staff(merchant_id)  # not staff: 403, nothing to audit
    keys: list[str] = []
    try:
        keys = reserve_attempt(db, actor.user_id, None, rules)
        code = normalize_code(raw_code)
        row = None
        with db.transaction(readonly=True) as session:
            if code is not None:
                row = session.execute(_PREVIEW, {"code": code, "m_id": merchant_id}).first()
            if row is not None:
                unused_of_line = session.scalar(_UNUSED_OF_LINE, {"line_id": row.order_line_id})
        if row is None:
            raise not_found()
        if role.role == CLERK and not set(row.store_ids or []) & role.store_ids:
            raise Forbidden("该券码不能在您的门店使用", code="store_not_valid_for_voucher")
    except AppError as exc:
        # Previews are reads: only refusals are audited (and only unknown codes stay counted).
        if keys and exc.code not in GUESSING:
            release_attempt(db, keys, rules)
        _record_outside(
            db,
            _audit_row(
                merchant_id=merchant_id,
                user_id=actor.user_id,
                store_id=None,
                code=raw_code,
                action=ACTION_PREVIEW,
                result=exc.code,
            ),
        )
        raise
    release_attempt(db, keys, rules)
    return {
        "code": row.code,
        "code_display": format_code(row.code),
        "status": row.status,
        "status_label": VOUCHER_STATUS.label(row.status),
        "listing_id": row.listing_id,
        "listing_title": row.title,
        "quantity": 1,
        "line_quantity": row.quantity,
        "unused_of_line": unused_of_line,
        "order_no": row.order_no,
        "holder_phone": mask_phone(row.phone),
        "valid_from": row.valid_from,
        "valid_until": row.valid_until,
        "store_ids": list(row.store_ids or []),
        "slot": (
            {
                "id": row.slot_id,
                "store_id": row.slot_store_id,
                "starts_at": row.slot_starts_at,
                "ends_at": row.slot_ends_at,
            }
            if row.slot_id is not None
            else None
        ),
        "redeemed_at": row.redeemed_at,
        "redeemed_store_id": row.redeemed_store_id,
    }


# --- redeem --------------------------------------------------------------------------------


def _refusal(row: Any, store_id: int, now: datetime, rules: RedemptionSettings) -> AppError | None:
    """Why this voucher cannot be redeemed at ``store_id`` now (None: it can)."""
    extra: dict[str, Any] = {}
    if row.status == REDEEMED:
        extra = {
            "redeemed_at": row.redeemed_at.isoformat() if row.redeemed_at else None,
            "redeemed_store_id": row.redeemed_store_id,
        }
    refusal = refusal_for_status(row.status, **extra)
    if refusal is not None:
        return refusal
    if store_id not in (row.store_ids or []):
        return Forbidden("该券码不能在此门店使用", code="store_not_valid_for_voucher")
    if row.slot_starts_at is not None:
        opens = row.slot_starts_at - timedelta(minutes=rules.redemption_early_minutes)
        if not opens <= now < row.valid_until:
            return Conflict(
                "不在预约场次的核销时间内",
                code="slot_not_now",
                slot_starts_at=row.slot_starts_at.isoformat(),
                slot_ends_at=(row.slot_ends_at or row.valid_until).isoformat(),
                early_minutes=rules.redemption_early_minutes,
            )
    if row.valid_until <= now:
        return expired_refusal()
    return None


def _say_when_and_where(db: Database, exc: AppError) -> None:
    """409 already redeemed: when, and at which store (by name, for the clerk)."""
    store_id = exc.extra.get("redeemed_store_id")
    at = exc.extra.get("redeemed_at")
    if store_id is None or at is None:
        return
    with db.transaction(readonly=True) as session:
        name = session.scalar(select(Store.name).where(Store.id == store_id)) or ""
    exc.extra["redeemed_store_name"] = name
    exc.detail = f"该券码已于 {format_china(datetime.fromisoformat(at))} 在「{name}」核销"


def redeem_in(
    session: Session,
    actor: Actor,
    merchant_id: int,
    code: str,
    store_id: int,
    *,
    rules: RedemptionSettings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The redemption inside the caller's transaction (authorisation already checked)."""
    now = now or utcnow()
    row = session.execute(_BY_CODE, {"code": code, "m_id": merchant_id}).first()
    if row is None:
        raise not_found()
    refusal = _refusal(row, store_id, now, rules)
    if refusal is not None:
        raise refusal
    changed = session.execute(
        _REDEEM,
        {
            "v_id": row.id,
            "m_id": merchant_id,
            "now": now,
            "opens_by": now + timedelta(minutes=rules.redemption_early_minutes),
            "at_store": store_id,
            "by_user": actor.user_id,
        },
    ).rowcount
    if changed != 1:
        # Lost a race (or time moved on): read it again and say why.
        again = session.execute(_BY_ID, {"v_id": row.id}).first()
        raise _refusal(again, store_id, utcnow(), rules) or Conflict(
            "该券码已核销", code="voucher_already_redeemed"
        )
    session.execute(
        _AUDIT,
        _audit_row(
            merchant_id=merchant_id,
            user_id=actor.user_id,
            store_id=store_id,
            code=code,
            action=ACTION_REDEEM,
            result=RESULT_OK,
            voucher_id=row.id,
            at=now,
        ),
    )
    refresh_order_status(session, row.order_id, by=Who(STAFF, actor.user_id))
    events.publish(
        session,
        events.VoucherRedeemed(
            voucher_id=row.id,
            code=row.code,
            order_id=row.order_id,
            order_no=row.order_no,
            order_line_id=row.order_line_id,
            listing_id=row.listing_id,
            merchant_id=merchant_id,
            store_id=store_id,
            amount_fen=row.amount_fen,
            at=now,
            by_user_id=actor.user_id,
        ),
    )
    return {
        "voucher": {
            "code": row.code,
            "code_display": format_code(row.code),
            "status": REDEEMED,
            "redeemed_at": now.isoformat(),
            "store_id": store_id,
        },
        "order_no": row.order_no,
        "listing_title": row.title,
    }


def redeem(
    db: Database,
    actor: Actor,
    merchant_id: int,
    raw_code: str,
    store_id: int,
    *,
    idempotency_key: str | None = None,
    rules: RedemptionSettings | None = None,
) -> dict[str, Any]:
    """POST /merchants/{id}/redemptions: clerk of that store, manager or owner. Every attempt
    is audited; unknown codes are throttled; ``Idempotency-Key`` replays the first answer."""
    rules = rules or redemption_settings()
    actor.require_staff(merchant_id)  # not staff at all: 403, not audited (no tenant to audit)
    ran = False
    keys: list[str] = []

    def action(session: Session) -> tuple[int, dict[str, Any]]:
        nonlocal ran
        ran = True
        return 200, redeem_in(session, actor, merchant_id, code, store_id, rules=rules)

    try:
        actor.require_staff(merchant_id, store_id=store_id)
        keys = reserve_attempt(db, actor.user_id, store_id, rules)
        code = normalize_code(raw_code) or ""
        if not code:
            raise not_found()
        _status, body = run_once(
            db,
            scope=f"redeem:{merchant_id}:{actor.user_id}",
            key=idempotency_key,
            payload={"code": code, "store_id": store_id},
            action=action,
        )
    except AppError as exc:
        if keys and exc.code not in GUESSING:
            release_attempt(db, keys, rules)  # a real voucher (or a replay): not a guess
        if exc.code == "voucher_already_redeemed":
            _say_when_and_where(db, exc)
        _record_outside(
            db,
            _audit_row(
                merchant_id=merchant_id,
                user_id=actor.user_id,
                store_id=_store_id_or_none(store_id),
                code=raw_code,
                action=ACTION_REDEEM,
                result=exc.code,
            ),
        )
        raise
    release_attempt(db, keys, rules)
    if not ran:  # an Idempotency-Key replay: audited, nothing redeemed again
        _record_outside(
            db,
            _audit_row(
                merchant_id=merchant_id,
                user_id=actor.user_id,
                store_id=_store_id_or_none(store_id),
                code=raw_code,
                action=ACTION_REDEEM,
                result="replayed",
            ),
        )
    return body


# --- undo ----------------------------------------------------------------------------------


def undo(
    db: Database,
    actor: Actor,
    merchant_id: int,
    raw_code: str,
    reason: str,
    *,
    rules: RedemptionSettings | None = None,
) -> dict[str, Any]:
    """A manager or owner takes back a redemption within the undo window, with a reason.
    Audited (success and refusal); the order goes back to paid if it had completed."""
    rules = rules or redemption_settings()
    actor.require_staff(merchant_id, MANAGERS)
    if not reason.strip():
        raise ValidationFailed("请填写撤销原因", field="reason")
    code = normalize_code(raw_code)
    now = utcnow()
    window = timedelta(minutes=rules.redemption_undo_minutes)
    voucher_id: int | None = None
    store_id: int | None = None
    keys: list[str] = []
    try:
        keys = reserve_attempt(db, actor.user_id, None, rules)
        with db.transaction() as session:
            row = (
                session.execute(_BY_CODE, {"code": code, "m_id": merchant_id}).first()
                if code
                else None
            )
            if row is None:
                raise not_found()
            voucher_id, store_id = row.id, row.redeemed_store_id
            if row.status != REDEEMED:
                raise Conflict(
                    f"该券码{VOUCHER_STATUS.label(row.status)}，无需撤销",
                    code="voucher_not_redeemed",
                    current_status=row.status,
                )
            if row.redeemed_at is None or row.redeemed_at + window < now:
                raise Conflict(
                    f"核销超过 {rules.redemption_undo_minutes} 分钟，不能撤销",
                    code="undo_window_passed",
                    redeemed_at=row.redeemed_at.isoformat() if row.redeemed_at else None,
                )
            changed = session.execute(
                update(Voucher.__table__)
                .where(
                    _V.id == row.id,
                    _V.status.in_(VOUCHER_STATUS.sources_of("undo")),
                    _V.redeemed_at >= now - window,
                )
                .values(
                    status=VOUCHER_STATUS.next_state(REDEEMED, "undo"),
                    redeemed_at=None,
                    redeemed_store_id=None,
                    redeemed_by=None,
                    updated_at=now,
                )
            ).rowcount
            if changed != 1:
                raise Conflict("该券码状态已变化，请刷新", code="voucher_not_redeemed")
            session.execute(
                insert(RedemptionAttempt.__table__),
                _audit_row(
                    merchant_id=merchant_id,
                    user_id=actor.user_id,
                    store_id=store_id,
                    code=row.code,
                    action=ACTION_UNDO,
                    result=RESULT_OK,
                    voucher_id=row.id,
                    reason=reason,
                    at=now,
                ),
            )
            refresh_order_status(session, row.order_id, by=Who(STAFF, actor.user_id), reason=reason)
            undone = events.RedemptionUndone(
                voucher_id=row.id,
                code=row.code,
                order_id=row.order_id,
                order_no=row.order_no,
                order_line_id=row.order_line_id,
                listing_id=row.listing_id,
                merchant_id=merchant_id,
                store_id=row.redeemed_store_id,
                amount_fen=row.amount_fen,
                at=now,
                by_user_id=actor.user_id,
            )
            events.publish(session, undone)
    except AppError as exc:
        if keys and exc.code not in GUESSING:
            release_attempt(db, keys, rules)
        _record_outside(
            db,
            _audit_row(
                merchant_id=merchant_id,
                user_id=actor.user_id,
                store_id=store_id,
                code=raw_code,
                action=ACTION_UNDO,
                result=exc.code,
                voucher_id=voucher_id,
                reason=reason,
            ),
        )
        raise
    release_attempt(db, keys, rules)
    return {
        "voucher": {
            "code": row.code,
            "code_display": format_code(row.code),
            "status": UNUSED,
            "status_label": VOUCHER_STATUS.label(UNUSED),
        },
        "order_no": row.order_no,
        "listing_title": row.title,
        "undone_at": now.isoformat(),
        "reason": reason,
    }


# --- the audit, for staff ------------------------------------------------------------------


def list_attempts(
    session: Session,
    actor: Actor,
    merchant_id: int,
    *,
    store_id: int | None = None,
    result: str | None = None,
    action: str | None = None,
    limit: int = 20,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """核销记录: owners and managers see every attempt of the merchant; a clerk those at its
    stores. Newest first."""
    role = actor.require_staff(merchant_id)
    if store_id is not None:
        actor.require_staff(merchant_id, store_id=store_id)
    a = RedemptionAttempt.__table__.c
    stmt = (
        select(
            a.id,
            a.store_id,
            a.user_id,
            a.action,
            a.code,
            a.result,
            a.reason,
            a.created_at,
            User.name,
            _L.title,
            _O.order_no,
        )
        .join(User, User.id == a.user_id)
        .outerjoin(Voucher.__table__, _V.id == a.voucher_id)
        .outerjoin(OrderLine.__table__, _L.id == _V.order_line_id)
        .outerjoin(Order.__table__, _O.id == _V.order_id)
        .where(a.merchant_id == merchant_id)
        .order_by(a.id.desc())
        .limit(limit)
    )
    if role.role not in MANAGERS:
        stmt = stmt.where(a.store_id.in_(sorted(role.store_ids)))
    if store_id is not None:
        stmt = stmt.where(a.store_id == store_id)
    if result is not None:
        stmt = stmt.where(a.result == result)
    if action is not None:
        stmt = stmt.where(a.action == action)
    if before_id is not None:
        stmt = stmt.where(a.id < before_id)
    return [
        {
            "id": r.id,
            "action": r.action,
            "result": r.result,
            "code": r.code,
            "store_id": r.store_id,
            "user_id": r.user_id,
            "user_name": r.name,
            "listing_title": r.title,
            "order_no": r.order_no,
            "reason": r.reason,
            "created_at": r.created_at,
        }
        for r in session.execute(stmt)
    ]
