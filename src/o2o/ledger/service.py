"""Posting to the double-entry ledger, and reading balances back (DESIGN.md law 4).

Sign convention
---------------
Every entry's ``amount_fen`` is **debit positive, credit negative**, and the entries of a
transaction sum to zero. ``balance(code)`` is the plain sum of an account's entries, so it is
positive for debit-normal accounts (assets: money held at a provider) and negative for
credit-normal ones (what we owe, what we earned). ``balance(code, natural=True)`` flips the sign of
credit-normal accounts so that "the usual amount" reads positive — that is what screens show.

Accounts (created on first use; ``ACCOUNT_KINDS`` is the whole list)
--------------------------------------------------------------------
=============================  ============  ===============================================
code                           type          meaning
=============================  ============  ===============================================
``provider:{provider}``        asset         money collected through a provider (``sandbox``,
                                             ``wechatpay``) minus refunds through it — what the
                                             provider's trade bill says; reconciliation
                                             compares the two
``consumer_unearned``          liability     consumers' money received for lines not yet earned
                                             (vouchers unused, goods not yet received)
``merchant_payable:{id}``      liability     what the platform owes the merchant
``platform_commission``        revenue       the platform's commission, net of reversals
``merchant_paid_out:{id}``     contra_asset  money that has left the platform for the
                                             merchant (bank transfer or WeChat profit sharing)
``platform_subsidy``           expense       platform-funded discounts (adjustments)
=============================  ============  ===============================================

The money flows (each is one balanced transaction; D = debit +, C = credit −)
---------------------------------------------------------------------------
- **payment received** (``post_payment_received``): D ``provider:p`` A / C ``consumer_unearned`` A.
- **line earned** — a voucher redeemed, a goods order completed (``post_earned``), gross G at the
  commission rate snapshotted on the line, commission ``c = apply_rate(G, bp)``:
  D ``consumer_unearned`` G / C ``merchant_payable:m`` G − c / C ``platform_commission`` c.
- **refund before earned** (``post_refund_before_earned``), R:
  D ``consumer_unearned`` R / C ``provider:p`` R (p = the provider of the refunded payment).
- **refund after earned** (``post_refund_after_earned``), R out of an earned posting (G, c):
  the commission is given back in proportion, cumulatively so that refunding all of G gives back
  exactly c — ``r_c = round(c·(before+R)/G) − round(c·before/G)``:
  D ``platform_commission`` r_c / D ``merchant_payable:m`` R − r_c / C ``provider:p`` R.
  The payable may go negative (the merchant was already paid and now owes it back).
- **payout** (``post_payout``), P: D ``merchant_payable:m`` P / C ``merchant_paid_out:m`` P,
  whether paid by bank transfer or through WeChat Pay profit sharing (分账). The provider account
  is *not* credited for profit sharing: it mirrors the trade bill (payments − refunds), and what
  left it for merchants is the paid-out account (so cash still at a provider = provider − the
  profit-shared payouts).
- **reversal** (``reverse``): the negation of a transaction, posted once; **adjustment**: any
  balanced correction through ``post``.

Identities that hold after any sequence (tests/test_ledger.py checks them after every step), in
natural signs: ``provider:*`` = payments − refunds; and
Σ ``merchant_payable`` + ``platform_commission`` + ``consumer_unearned`` =
payments − refunds − payouts (= Σ ``provider:*`` − Σ ``merchant_paid_out``).

Guards: everything tied to a payment locks that payment's ``payment_received`` row first, so
nothing is earned or refunded beyond what was paid (per payment), even under concurrency. A payout
locks the merchant's payable account and may not exceed it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from o2o.errors import Conflict, NotFound, ValidationFailed
from o2o.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from o2o.money import MAX_FEN, apply_rate
from o2o.timeutil import utcnow

# --- accounts ----------------------------------------------------------------------------------

PROVIDER_PREFIX = "provider:"
CONSUMER_UNEARNED = "consumer_unearned"
MERCHANT_PAYABLE_PREFIX = "merchant_payable:"
PLATFORM_COMMISSION = "platform_commission"
MERCHANT_PAID_OUT_PREFIX = "merchant_paid_out:"
PLATFORM_SUBSIDY = "platform_subsidy"

ASSET, LIABILITY, REVENUE, EXPENSE, CONTRA_ASSET = (
    "asset",
    "liability",
    "revenue",
    "expense",
    "contra_asset",
)
DEBIT_NORMAL = frozenset({ASSET, EXPENSE})

# code (exact) or prefix (ending in ":") → (type, label)
ACCOUNT_KINDS: dict[str, tuple[str, str]] = {
    PROVIDER_PREFIX: (ASSET, "支付渠道资金"),
    CONSUMER_UNEARNED: (LIABILITY, "消费者待确认资金"),
    MERCHANT_PAYABLE_PREFIX: (LIABILITY, "商户应付"),
    PLATFORM_COMMISSION: (REVENUE, "平台佣金收入"),
    MERCHANT_PAID_OUT_PREFIX: (CONTRA_ASSET, "已打款给商户"),
    PLATFORM_SUBSIDY: (EXPENSE, "平台补贴"),
}
PROVIDER_LABELS = {"wechatpay": "微信支付", "sandbox": "沙箱支付"}

PAYMENT_RECEIVED, REFUND, EARNED, COMMISSION, PAYOUT, ADJUSTMENT, REVERSAL = (
    "payment_received",
    "refund",
    "earned",
    "commission",
    "payout",
    "adjustment",
    "reversal",
)
KINDS = frozenset({PAYMENT_RECEIVED, REFUND, EARNED, COMMISSION, PAYOUT, ADJUSTMENT, REVERSAL})
PAYOUT_VIA = {"bank": "银行转账", "wechat_profit_sharing": "微信支付分账"}

REF_FIELDS = ("order_no", "payment_no", "refund_no", "payout_no", "line_id", "merchant_id")


def provider_account(provider: str) -> str:
    return PROVIDER_PREFIX + provider


def merchant_payable(merchant_id: int) -> str:
    return f"{MERCHANT_PAYABLE_PREFIX}{merchant_id}"


def merchant_paid_out(merchant_id: int) -> str:
    return f"{MERCHANT_PAID_OUT_PREFIX}{merchant_id}"


@dataclass(frozen=True)
class AccountKind:
    type: str
    label: str
    merchant_id: int | None

    @property
    def debit_normal(self) -> bool:
        return self.type in DEBIT_NORMAL


def account_kind(code: str) -> AccountKind:
    """Type and label of an account code; ValidationFailed for a code outside ``ACCOUNT_KINDS``."""
    if code in ACCOUNT_KINDS and not code.endswith(":"):
        kind_type, label = ACCOUNT_KINDS[code]
        return AccountKind(kind_type, label, None)
    prefix, sep, suffix = code.partition(":")
    if sep and suffix and prefix + ":" in ACCOUNT_KINDS:
        kind_type, label = ACCOUNT_KINDS[prefix + ":"]
        if prefix + ":" == PROVIDER_PREFIX:
            if suffix.isascii() and suffix.replace("_", "").isalnum() and len(suffix) <= 30:
                return AccountKind(
                    kind_type, f"{label} · {PROVIDER_LABELS.get(suffix, suffix)}", None
                )
        elif suffix.isdigit() and len(suffix) <= 18 and not suffix.startswith("0"):
            return AccountKind(kind_type, f"{label} · 商户{suffix}", int(suffix))
    raise ValidationFailed(f"未知的账户：{code}", code="ledger_unknown_account", field="account")


def _insert_ignore(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(LedgerAccount).on_conflict_do_nothing(index_elements=["code"]), rows)


def load_accounts(session: Session, codes: Iterable[str]) -> dict[str, LedgerAccount]:
    """Accounts by code, creating the missing ones (concurrency-safe: ON CONFLICT DO NOTHING)."""
    wanted = set(codes)
    kinds = {code: account_kind(code) for code in wanted}
    found = {
        a.code: a
        for a in session.scalars(select(LedgerAccount).where(LedgerAccount.code.in_(wanted)))
    }
    missing = wanted - found.keys()
    if missing:
        now = utcnow()
        _insert_ignore(
            session,
            [
                {
                    "code": code,
                    "type": kinds[code].type,
                    "merchant_id": kinds[code].merchant_id,
                    "created_at": now,
                }
                for code in sorted(missing)
            ],
        )
        found.update(
            (a.code, a)
            for a in session.scalars(select(LedgerAccount).where(LedgerAccount.code.in_(missing)))
        )
    return found


def ensure_accounts(session: Session, codes: Iterable[str]) -> dict[str, int]:
    """Account ids by code, creating the missing ones."""
    return {code: account.id for code, account in load_accounts(session, codes).items()}


# --- posting -----------------------------------------------------------------------------------


class Unbalanced(ValidationFailed):
    code = "ledger_unbalanced"
    title = "账务不平"


class KeyConflict(Conflict):
    code = "ledger_key_conflict"


Entries = Sequence[tuple[str, int]]


def _fingerprint(kind: str, entries: Entries, refs: dict[str, Any], related_id: int | None) -> str:
    payload = {
        "kind": kind,
        "entries": sorted([code, amount] for code, amount in entries),
        "refs": {k: refs.get(k) for k in REF_FIELDS},
        "related_id": related_id,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _check_entries(entries: Entries) -> None:
    if len(entries) < 2:
        raise Unbalanced("一笔账至少需要两条分录", code="ledger_empty")
    codes = [code for code, _ in entries]
    if len(set(codes)) != len(codes):
        raise Unbalanced("同一账户在一笔账中只能出现一次", code="ledger_duplicate_account")
    for _, amount in entries:
        if type(amount) is not int or amount == 0 or abs(amount) > MAX_FEN * 1000:
            raise Unbalanced("分录金额必须是非零的整数分", code="ledger_bad_amount")
    total = sum(amount for _, amount in entries)
    if total != 0:
        raise Unbalanced(f"借贷不平：合计 {total} 分")


def _existing(session: Session, key: str) -> LedgerTransaction | None:
    return session.scalar(select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key))


def _replay(existing: LedgerTransaction, fingerprint: str) -> LedgerTransaction:
    if existing.fingerprint != fingerprint:
        raise KeyConflict(f"记账键 {existing.idempotency_key} 已用于另一笔不同的账")
    return existing


def post(
    session: Session,
    kind: str,
    entries: Entries,
    *,
    key: str,
    order_no: str | None = None,
    payment_no: str | None = None,
    refund_no: str | None = None,
    payout_no: str | None = None,
    line_id: int | None = None,
    merchant_id: int | None = None,
    related_id: int | None = None,
    memo: str = "",
    at: datetime | None = None,
) -> LedgerTransaction:
    """Post one balanced transaction inside the caller's database transaction.

    ``entries`` are ``(account_code, amount_fen)``, debit positive, credit negative; they must
    sum to zero, be at least two, non-zero, one per account. Raises ``Unbalanced`` (422) otherwise.
    Idempotent on ``key``: posting the same key again with the same kind, entries and references
    returns the first transaction; with anything different it raises ``KeyConflict`` (409).
    ``at`` backdates the posting (imports, demo data); it defaults to now.
    """
    if kind not in KINDS:
        raise ValidationFailed(f"未知的记账类型：{kind}", code="ledger_unknown_kind", field="kind")
    if not key or len(key) > 160:
        raise ValidationFailed("记账键不能为空且不超过160个字符", field="key")
    entries = [(code, amount) for code, amount in entries]
    _check_entries(entries)
    refs = {
        "order_no": order_no,
        "payment_no": payment_no,
        "refund_no": refund_no,
        "payout_no": payout_no,
        "line_id": line_id,
        "merchant_id": merchant_id,
    }
    fingerprint = _fingerprint(kind, entries, refs, related_id)
    existing = _existing(session, key)
    if existing is not None:
        return _replay(existing, fingerprint)
    accounts = load_accounts(session, (code for code, _ in entries))
    created_at = at or utcnow()
    txn = LedgerTransaction(
        kind=kind,
        idempotency_key=key,
        fingerprint=fingerprint,
        related_id=related_id,
        memo=memo[:200],
        created_at=created_at,
        **refs,
    )
    rows = [
        LedgerEntry(account_id=accounts[code].id, amount_fen=amount, created_at=created_at)
        for code, amount in entries
    ]
    try:
        # A savepoint, so a concurrent twin that won the unique key leaves our transaction usable.
        with session.begin_nested():
            session.add(txn)
            session.flush()
            for row in rows:
                row.transaction_id = txn.id
            session.add_all(rows)
            session.flush()
    except IntegrityError:
        existing = _existing(session, key)
        if existing is None:
            raise
        return _replay(existing, fingerprint)
    # The relationships are known already: fill them in rather than reading them back.
    by_id = {account.id: account for account in accounts.values()}
    for row in rows:
        set_committed_value(row, "account", by_id[row.account_id])
    set_committed_value(txn, "entries", rows)
    return txn


def get_transaction(session: Session, transaction_id: int) -> LedgerTransaction:
    txn = session.get(LedgerTransaction, transaction_id)
    if txn is None:
        raise NotFound("没有这笔账", code="ledger_transaction_not_found")
    return txn


def transaction_by_key(session: Session, key: str) -> LedgerTransaction | None:
    return _existing(session, key)


def entries_of(txn: LedgerTransaction) -> list[tuple[str, int]]:
    return [(e.account.code, e.amount_fen) for e in txn.entries]


def reverse(
    session: Session, transaction_id: int, *, key: str, memo: str = ""
) -> LedgerTransaction:
    """Post the exact negation of a transaction (kind ``reversal``), at most once per transaction.

    The original stays as it was; balances return to what they were before it.
    """
    original = session.scalar(
        select(LedgerTransaction).where(LedgerTransaction.id == transaction_id).with_for_update()
    )
    if original is None:
        raise NotFound("没有这笔账", code="ledger_transaction_not_found")
    replay = _existing(session, key)
    if replay is None:
        already = session.scalar(
            select(LedgerTransaction.id).where(
                LedgerTransaction.related_id == original.id, LedgerTransaction.kind == REVERSAL
            )
        )
        if already is not None:
            raise Conflict("这笔账已冲正过", code="ledger_already_reversed")
    return post(
        session,
        REVERSAL,
        [(code, -amount) for code, amount in entries_of(original)],
        key=key,
        order_no=original.order_no,
        payment_no=original.payment_no,
        refund_no=original.refund_no,
        payout_no=original.payout_no,
        line_id=original.line_id,
        merchant_id=original.merchant_id,
        related_id=original.id,
        memo=memo or f"冲正 #{original.id}",
    )


# --- the platform's money flows ----------------------------------------------------------------


def _positive(amount_fen: int, field: str = "amount_fen") -> int:
    if type(amount_fen) is not int or amount_fen < 0 or amount_fen > MAX_FEN:
        raise ValidationFailed("金额必须是不小于0的整数分", field=field)
    return amount_fen


def post_payment_received(
    session: Session,
    *,
    payment_no: str,
    provider: str,
    amount_fen: int,
    order_no: str | None = None,
    at: datetime | None = None,
) -> LedgerTransaction | None:
    """Money arrived at ``provider`` for ``payment_no``. Key ``payment:{payment_no}``.

    None when the amount is 0 (a fully discounted checkout moves no money)."""
    if not _positive(amount_fen):
        return None
    return post(
        session,
        PAYMENT_RECEIVED,
        [(provider_account(provider), amount_fen), (CONSUMER_UNEARNED, -amount_fen)],
        key=f"payment:{payment_no}",
        payment_no=payment_no,
        order_no=order_no,
        at=at,
    )


@dataclass(frozen=True)
class PaymentPosition:
    """What the ledger holds for one payment (natural signs)."""

    provider: str
    received_fen: int
    refunded_fen: int
    unearned_fen: int

    @property
    def refundable_fen(self) -> int:
        return self.received_fen - self.refunded_fen


def _lock_payment(session: Session, payment_no: str) -> LedgerTransaction:
    payment = session.scalar(
        select(LedgerTransaction)
        .where(LedgerTransaction.idempotency_key == f"payment:{payment_no}")
        .with_for_update()
    )
    if payment is None:
        raise Conflict(f"支付单 {payment_no} 尚未入账", code="ledger_payment_not_posted")
    return payment


def payment_position(session: Session, payment_no: str) -> PaymentPosition:
    payment = _existing(session, f"payment:{payment_no}")
    if payment is None:
        raise NotFound(f"支付单 {payment_no} 尚未入账", code="ledger_payment_not_posted")
    return _position(session, payment)


def _position(session: Session, payment: LedgerTransaction) -> PaymentPosition:
    provider_code = next(c for c, a in entries_of(payment) if c.startswith(PROVIDER_PREFIX))
    sums = dict(
        session.execute(
            select(LedgerAccount.code, func.sum(LedgerEntry.amount_fen))
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(
                LedgerTransaction.payment_no == payment.payment_no,
                LedgerAccount.code.in_([provider_code, CONSUMER_UNEARNED]),
            )
            .group_by(LedgerAccount.code)
        ).all()
    )
    received = next(a for c, a in entries_of(payment) if c == provider_code)
    held = int(sums.get(provider_code) or 0)
    return PaymentPosition(
        provider=provider_code.removeprefix(PROVIDER_PREFIX),
        received_fen=received,
        refunded_fen=received - held,
        unearned_fen=-int(sums.get(CONSUMER_UNEARNED) or 0),
    )


def post_earned(
    session: Session,
    *,
    key: str,
    payment_no: str,
    merchant_id: int,
    gross_fen: int,
    commission_bp: int,
    order_no: str | None = None,
    line_id: int | None = None,
) -> LedgerTransaction | None:
    """A line (or a voucher of it) became earned: the merchant is owed it, less commission.

    ``commission_bp`` is the rate snapshotted on the order line at payment. Suggested keys:
    ``earned:voucher:{code}`` for a redeemed voucher, ``earned:line:{line_id}`` for a completed
    goods line. Refuses to earn more than is still unearned for the payment (409).
    None when ``gross_fen`` is 0.
    """
    if not _positive(gross_fen, "gross_fen"):
        return None
    if type(commission_bp) is not int or not 0 <= commission_bp <= 10_000:
        raise ValidationFailed("佣金比例超出范围", field="commission_bp")
    replay = _existing(session, key)
    if replay is None:
        position = _position(session, _lock_payment(session, payment_no))
        if gross_fen > position.unearned_fen:
            raise Conflict(
                f"确认收入 {gross_fen} 分超过支付单 {payment_no} 待确认的 {position.unearned_fen} 分",
                code="ledger_exceeds_unearned",
            )
    commission = apply_rate(gross_fen, commission_bp)
    entries = [
        (CONSUMER_UNEARNED, gross_fen),
        (merchant_payable(merchant_id), -(gross_fen - commission)),
        (PLATFORM_COMMISSION, -commission),
    ]
    return post(
        session,
        EARNED,
        [(c, a) for c, a in entries if a],
        key=key,
        order_no=order_no,
        payment_no=payment_no,
        line_id=line_id,
        merchant_id=merchant_id,
        memo=f"佣金 {commission_bp / 100:g}%",
    )


def post_refund_before_earned(
    session: Session,
    *,
    refund_no: str,
    payment_no: str,
    amount_fen: int,
    order_no: str | None = None,
    key: str | None = None,
) -> LedgerTransaction | None:
    """A refund of money not yet earned goes back through the payment's provider.

    Key ``refund:{refund_no}:unearned``. Refuses more than the payment still holds unearned (409).
    """
    if not _positive(amount_fen):
        return None
    key = key or f"refund:{refund_no}:unearned"
    position = _position(session, _lock_payment(session, payment_no))
    refundable = min(position.unearned_fen, position.refundable_fen)
    if _existing(session, key) is None and amount_fen > refundable:
        raise Conflict(
            f"退款 {amount_fen} 分超过支付单 {payment_no} 可退的待确认金额 {refundable} 分",
            code="ledger_refund_exceeds_unearned",
        )
    provider_code = provider_account(position.provider)
    return post(
        session,
        REFUND,
        [(CONSUMER_UNEARNED, amount_fen), (provider_code, -amount_fen)],
        key=key,
        order_no=order_no,
        payment_no=payment_no,
        refund_no=refund_no,
    )


def _earned_parts(earned: LedgerTransaction) -> tuple[int, int, int]:
    """(gross, commission, merchant id) of an ``earned`` posting."""
    entries = dict(entries_of(earned))
    gross = entries[CONSUMER_UNEARNED]
    commission = -entries.get(PLATFORM_COMMISSION, 0)
    assert earned.merchant_id is not None
    return gross, commission, earned.merchant_id


def refunded_after_earned(session: Session, earned: LedgerTransaction) -> int:
    """How much of an earned posting has been refunded (natural sign)."""
    total = session.scalar(
        select(func.sum(LedgerEntry.amount_fen))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.related_id == earned.id,
            LedgerTransaction.kind == REFUND,
            LedgerAccount.code.startswith(PROVIDER_PREFIX),
        )
    )
    return -int(total or 0)


def post_refund_after_earned(
    session: Session,
    *,
    refund_no: str,
    earned_key: str,
    amount_fen: int,
    key: str | None = None,
) -> LedgerTransaction | None:
    """A refund of (part of) an earned posting: commission and payable are given back in
    proportion, the money leaves through the payment's provider.

    Key ``refund:{refund_no}:{earned_key}`` (one refund may cover several earned lines: post once
    per line). Refuses more than what is left of that posting (409).
    """
    if not _positive(amount_fen):
        return None
    key = key or f"refund:{refund_no}:{earned_key}"
    earned = _existing(session, earned_key)
    if earned is None or earned.kind != EARNED:
        raise NotFound(f"没有记账键为 {earned_key} 的收入确认", code="ledger_earned_not_found")
    assert earned.payment_no is not None
    gross, commission, merchant_id = _earned_parts(earned)
    replay = _existing(session, key)
    if replay is not None:
        # The split was decided when it was first posted; a replay must ask for the same refund.
        credited = -sum(a for c, a in entries_of(replay) if c.startswith(PROVIDER_PREFIX))
        if (replay.kind, replay.related_id, replay.refund_no, credited) != (
            REFUND,
            earned.id,
            refund_no,
            amount_fen,
        ):
            raise KeyConflict(f"记账键 {key} 已用于另一笔不同的账")
        return replay
    payment = _lock_payment(session, earned.payment_no)
    position = _position(session, payment)
    before = refunded_after_earned(session, earned)
    if amount_fen > gross - before or amount_fen > position.refundable_fen:
        raise Conflict(
            f"退款 {amount_fen} 分超过该笔已确认收入可退的 {gross - before} 分",
            code="ledger_refund_exceeds_earned",
        )
    # Cumulative rounding: all refunds of a posting together give back exactly its commission.
    commission_back = _share(commission, before + amount_fen, gross) - _share(
        commission, before, gross
    )
    entries = [
        (PLATFORM_COMMISSION, commission_back),
        (merchant_payable(merchant_id), amount_fen - commission_back),
        (provider_account(position.provider), -amount_fen),
    ]
    return post(
        session,
        REFUND,
        [(c, a) for c, a in entries if a],
        key=key,
        order_no=earned.order_no,
        payment_no=earned.payment_no,
        refund_no=refund_no,
        line_id=earned.line_id,
        merchant_id=merchant_id,
        related_id=earned.id,
    )


def _share(total: int, part: int, whole: int) -> int:
    """round_half_up(total · part / whole), integers only."""
    return (2 * total * part + whole) // (2 * whole)


def post_payout(
    session: Session,
    *,
    payout_no: str,
    merchant_id: int,
    amount_fen: int,
    via: str = "bank",
    memo: str = "",
    allow_overdraw: bool = False,
) -> LedgerTransaction | None:
    """Money paid to the merchant (bank transfer marked paid, or WeChat Pay profit sharing).

    Key ``payout:{payout_no}``. Refuses more than the merchant's payable balance (409) unless
    ``allow_overdraw``.
    """
    if not _positive(amount_fen):
        return None
    if via not in PAYOUT_VIA:
        raise ValidationFailed("未知的打款方式", field="via")
    key = f"payout:{payout_no}"
    payable_code = merchant_payable(merchant_id)
    if _existing(session, key) is None and not allow_overdraw:
        ensure_accounts(session, [payable_code])
        session.execute(
            select(LedgerAccount.id).where(LedgerAccount.code == payable_code).with_for_update()
        )
        payable = balance(session, payable_code, natural=True)
        if amount_fen > payable:
            raise Conflict(
                f"打款 {amount_fen} 分超过商户应付余额 {payable} 分", code="ledger_payout_exceeds"
            )
    return post(
        session,
        PAYOUT,
        [(payable_code, amount_fen), (merchant_paid_out(merchant_id), -amount_fen)],
        key=key,
        payout_no=payout_no,
        merchant_id=merchant_id,
        memo=memo or PAYOUT_VIA[via],
    )


# --- balances ----------------------------------------------------------------------------------


def _natural(code: str, raw: int) -> int:
    return raw if account_kind(code).debit_normal else -raw


def balance(
    session: Session, account_code: str, until: datetime | None = None, *, natural: bool = False
) -> int:
    """Sum of the account's entries (debit positive), optionally only those before ``until``.

    ``natural=True`` flips credit-normal accounts so their usual balance reads positive.
    An account never used has balance 0.
    """
    query = (
        select(func.sum(LedgerEntry.amount_fen))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.code == account_code)
    )
    if until is not None:
        query = query.where(LedgerEntry.created_at < until)
    raw = int(session.scalar(query) or 0)
    return _natural(account_code, raw) if natural else raw


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def balances(
    session: Session, prefix: str = "", until: datetime | None = None, *, natural: bool = False
) -> dict[str, int]:
    """Balances of every account whose code starts with ``prefix`` (accounts with no entries: 0)."""
    query = (
        select(LedgerAccount.code, func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
        .select_from(LedgerAccount)
        .outerjoin(
            LedgerEntry,
            (LedgerEntry.account_id == LedgerAccount.id)
            if until is None
            else (LedgerEntry.account_id == LedgerAccount.id) & (LedgerEntry.created_at < until),
        )
        .where(LedgerAccount.code.like(_like_prefix(prefix), escape="\\"))
        .group_by(LedgerAccount.code)
        .order_by(LedgerAccount.code)
    )
    return {
        code: (_natural(code, int(raw)) if natural else int(raw))
        for code, raw in session.execute(query).all()
    }


@dataclass(frozen=True)
class MerchantBalance:
    merchant_id: int
    payable_fen: int
    paid_out_fen: int
    commission_fen: int


def merchant_balance(session: Session, merchant_id: int) -> MerchantBalance:
    """Payable and paid out for a merchant (natural signs), and the commission charged on its
    earned lines net of refunds."""
    commission = session.scalar(
        select(func.sum(LedgerEntry.amount_fen))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.merchant_id == merchant_id,
            LedgerAccount.code == PLATFORM_COMMISSION,
        )
    )
    return MerchantBalance(
        merchant_id=merchant_id,
        payable_fen=balance(session, merchant_payable(merchant_id), natural=True),
        paid_out_fen=balance(session, merchant_paid_out(merchant_id), natural=True),
        commission_fen=-int(commission or 0),
    )


def unbalanced_transactions(session: Session) -> list[int]:
    """Ids of transactions whose entries do not sum to zero or that have fewer than two entries.

    Always empty; the audit (tests, a future worker check) proves it."""
    rows = session.execute(
        select(LedgerTransaction.id)
        .outerjoin(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .group_by(LedgerTransaction.id)
        .having(
            (func.coalesce(func.sum(LedgerEntry.amount_fen), 0) != 0)
            | (func.count(LedgerEntry.id) < 2)
        )
    ).all()
    return [row[0] for row in rows]


# --- listing -----------------------------------------------------------------------------------


def list_transactions(
    session: Session,
    *,
    kind: str | None = None,
    order_no: str | None = None,
    payment_no: str | None = None,
    merchant_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[LedgerTransaction]:
    """Newest first; ``before_id`` is the cursor (the last id of the previous page)."""
    query = select(LedgerTransaction).order_by(LedgerTransaction.id.desc()).limit(limit)
    if kind:
        query = query.where(LedgerTransaction.kind == kind)
    if order_no:
        query = query.where(LedgerTransaction.order_no == order_no)
    if payment_no:
        query = query.where(LedgerTransaction.payment_no == payment_no)
    if merchant_id:
        query = query.where(LedgerTransaction.merchant_id == merchant_id)
    if before_id:
        query = query.where(LedgerTransaction.id < before_id)
    return list(session.scalars(query))


def list_accounts(
    session: Session, *, prefix: str = "", limit: int = 100, after_id: int | None = None
) -> list[tuple[LedgerAccount, int]]:
    """Accounts (by id) with their natural balances."""
    query = (
        select(LedgerAccount, func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
        .outerjoin(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerAccount.code.like(_like_prefix(prefix), escape="\\"))
        .group_by(LedgerAccount.id)
        .order_by(LedgerAccount.id)
        .limit(limit)
    )
    if after_id:
        query = query.where(LedgerAccount.id > after_id)
    return [
        (account, _natural(account.code, int(raw))) for account, raw in session.execute(query).all()
    ]
