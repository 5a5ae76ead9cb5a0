"""The daily WeChat Pay trade bill (交易账单), downloaded and reconciled by the worker.

WeChat Pay generates the bill of a day after 10:00 (Beijing) the next day. From then on the
worker job ``settlement_trade_bill``:

1. makes sure yesterday has a ``TradeBillDownload`` row (unique per day: however many workers
   run, there is one row, so one download);
2. claims a due row with a conditional UPDATE (a lease: a worker that dies lets it go after
   ``LEASE``) — the other workers' UPDATE finds it taken and moves on;
3. outside any transaction: ``GET /v3/bill/tradebill`` (signed answer: ``hash_type``,
   ``hash_value``, ``download_url``), downloads the file and checks its hash against the signed
   one — a file that does not match is never reconciled;
4. reconciles it and stores the import (``source`` = download, shown on the admin 对账 page)
   and marks the day done, in one transaction that first checks nobody finished it meanwhile.

"Being generated" (STATEMENT_CREATING: late beyond 10:00), an unreachable WeChat Pay or a hash
that does not match: the row stays ``pending`` with the error, retried later (the admin page
shows it). No bill for the day (NO_STATEMENT_EXIST: no transactions) is reconciled as an empty
bill, so our own WeChat Pay payments of that day still show up as missing on the bill.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from o2o.config import Settings
from o2o.db import Database
from o2o.errors import AppError
from o2o.payments import registry
from o2o.payments.wechatpay import (
    WeChatPayError,
    WeChatPayException,
    WeChatPayVerificationError,
)
from o2o.payments.wechatpay_bill import parse_trade_bill
from o2o.payments.wechatpay_provider import WeChatPayProvider
from o2o.settlement import reconciliation
from o2o.settlement.models import (
    BILL_DONE,
    BILL_PENDING,
    SOURCE_DOWNLOAD,
    TradeBillDownload,
)
from o2o.timeutil import to_china, utcnow

log = logging.getLogger(__name__)

PROVIDER = "wechatpay"
# WeChat Pay publishes a day's bill after this hour (Beijing time) of the next day.
PUBLISH_HOUR = 10
# A worker holds a claimed day this long (a crashed worker's claim runs out).
LEASE = timedelta(minutes=10)
# Not generated yet (STATEMENT_CREATING): ask again after this.
NOT_READY_RETRY = timedelta(minutes=30)
# Anything else (no answer, a hash that does not match, an unreadable file): 5 min, doubling.
ERROR_RETRY_FIRST = timedelta(minutes=5)
ERROR_RETRY_MAX = timedelta(hours=6)
NOT_READY_CODES = frozenset({"STATEMENT_CREATING"})
NO_BILL_CODES = frozenset({"NO_STATEMENT_EXIST"})


@dataclass(frozen=True)
class _Claim:
    id: int
    bill_date: date
    attempts: int


def due_bill_date(now: datetime) -> date | None:
    """The day whose bill should be fetched now: yesterday, once it is past 10:00 in Beijing."""
    china = to_china(now)
    if china.hour < PUBLISH_HOUR:
        return None
    return china.date() - timedelta(days=1)


def _ensure_row(db: Database, bill_date: date, now: datetime) -> None:
    with db.transaction() as session:
        exists = session.scalar(
            select(TradeBillDownload.id).where(
                TradeBillDownload.provider == PROVIDER,
                TradeBillDownload.bill_date == bill_date.isoformat(),
            )
        )
        if exists is not None:
            return
        try:
            with session.begin_nested():
                session.add(
                    TradeBillDownload(
                        provider=PROVIDER,
                        bill_date=bill_date.isoformat(),
                        status=BILL_PENDING,
                        next_attempt_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            pass  # another worker made it first: one row per day


def _claim(db: Database, now: datetime) -> _Claim | None:
    """Take one due day for this worker (a conditional UPDATE: only one worker wins it)."""
    with db.transaction() as session:
        candidates = list(
            session.scalars(
                select(TradeBillDownload.id)
                .where(
                    TradeBillDownload.provider == PROVIDER,
                    TradeBillDownload.status == BILL_PENDING,
                    TradeBillDownload.next_attempt_at <= now,
                    or_(
                        TradeBillDownload.leased_until.is_(None),
                        TradeBillDownload.leased_until <= now,
                    ),
                )
                .order_by(TradeBillDownload.bill_date)
                .limit(5)
            )
        )
        for row_id in candidates:
            claimed = session.execute(
                update(TradeBillDownload)
                .where(
                    TradeBillDownload.id == row_id,
                    TradeBillDownload.status == BILL_PENDING,
                    TradeBillDownload.next_attempt_at <= now,
                    or_(
                        TradeBillDownload.leased_until.is_(None),
                        TradeBillDownload.leased_until <= now,
                    ),
                )
                .values(
                    leased_until=now + LEASE,
                    attempts=TradeBillDownload.attempts + 1,
                    updated_at=now,
                )
                .returning(TradeBillDownload.bill_date, TradeBillDownload.attempts)
                .execution_options(synchronize_session=False)
            ).first()
            if claimed is not None:
                return _Claim(row_id, date.fromisoformat(claimed[0]), claimed[1])
    return None


def _retry(db: Database, claim: _Claim, error: str, wait: timedelta, now: datetime) -> None:
    with db.transaction() as session:
        session.execute(
            update(TradeBillDownload)
            .where(TradeBillDownload.id == claim.id, TradeBillDownload.status == BILL_PENDING)
            .values(
                last_error=error[:500],
                next_attempt_at=now + wait,
                leased_until=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    log.warning("trade bill of %s: %s (retry in %s)", claim.bill_date, error, wait)


def _error_wait(attempts: int) -> timedelta:
    return min(ERROR_RETRY_FIRST * (2 ** max(attempts - 1, 0)), ERROR_RETRY_MAX)


def _finish(
    session: Session, claim: _Claim, text: str, hash_type: str, hash_value: str, now: datetime
) -> int | None:
    """Reconcile and store, once: None when another worker finished the day meanwhile."""
    row = session.scalar(
        select(TradeBillDownload).where(TradeBillDownload.id == claim.id).with_for_update()
    )
    if row is None or row.status == BILL_DONE:
        return None
    bill = parse_trade_bill(text) if text else reconciliation.empty_bill()
    report = reconciliation.reconcile_bill(session, bill, bill_date=claim.bill_date)
    reconciliation.store(session, report, text, actor_id=None, source=SOURCE_DOWNLOAD)
    row.status = BILL_DONE
    row.import_id = report.import_id
    row.hash_type = hash_type[:10]
    row.hash_value = hash_value[:128]
    row.last_error = ""
    row.leased_until = None
    row.updated_at = now
    return report.import_id


def _process(db: Database, provider: WeChatPayProvider, claim: _Claim, now: datetime) -> bool:
    client = provider.client
    text, hash_type, hash_value = "", "", ""
    try:
        ticket = client.apply_trade_bill(claim.bill_date)
        content = client.download_bill(ticket)  # checks the signed hash
        text = content.decode("utf-8-sig")
        hash_type, hash_value = ticket.hash_type, ticket.hash_value
    except WeChatPayError as exc:
        if exc.code in NOT_READY_CODES:
            _retry(db, claim, f"账单生成中（{exc.code}）", NOT_READY_RETRY, now)
            return False
        if exc.code not in NO_BILL_CODES:
            _retry(
                db,
                claim,
                f"微信支付拒绝：{exc.code} {exc.message}",
                _error_wait(claim.attempts),
                now,
            )
            return False
        # No bill that day (no transactions at WeChat Pay): reconcile against an empty one.
    except WeChatPayVerificationError as exc:
        _retry(db, claim, f"账单校验失败：{exc}", _error_wait(claim.attempts), now)
        return False
    except WeChatPayException as exc:
        _retry(db, claim, f"无法连接微信支付：{exc}", _error_wait(claim.attempts), now)
        return False
    except UnicodeDecodeError:
        _retry(db, claim, "账单不是 UTF-8 文本", _error_wait(claim.attempts), now)
        return False
    try:
        with db.transaction() as session:
            import_id = _finish(session, claim, text, hash_type, hash_value, now)
    except (AppError, ValueError) as exc:
        _retry(db, claim, f"账单无法对账：{exc}", _error_wait(claim.attempts), now)
        return False
    if import_id is not None:
        log.info("trade bill of %s reconciled (import %s)", claim.bill_date, import_id)
    return import_id is not None


def download_due(
    db: Database, settings: Settings, *, now: datetime | None = None, limit: int = 3
) -> int:
    """The worker job: fetch, verify, reconcile and store the due trade bills (at most
    ``limit`` days per run). Returns how many days were reconciled."""
    provider = registry.find_provider(registry.WECHATPAY, settings)
    if not isinstance(provider, WeChatPayProvider):
        return 0
    now = now or utcnow()
    due = due_bill_date(now)
    if due is not None:
        _ensure_row(db, due, now)
    done = 0
    for _ in range(limit):
        claim = _claim(db, now)
        if claim is None:
            break
        if _process(db, provider, claim, now):
            done += 1
    return done


def recent(session: Session, limit: int = 10) -> list[TradeBillDownload]:
    """The latest bill days, newest first (the admin 对账 page)."""
    return list(
        session.scalars(
            select(TradeBillDownload)
            .where(TradeBillDownload.provider == PROVIDER)
            .order_by(TradeBillDownload.bill_date.desc())
            .limit(limit)
        )
    )
