"""The double-entry ledger (DESIGN.md law 4): balanced, idempotent, immutable, exact to the fen."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from o2o.db import Database
from o2o.errors import Conflict, NotFound, ValidationFailed
from o2o.ledger import service as ledger
from o2o.ledger.models import LedgerAccount, LedgerEntry, LedgerImmutable, LedgerTransaction
from o2o.merchants.models import Category
from o2o.money import apply_rate
from o2o.timeutil import utcnow
from tests.support import make_merchant

U = ledger.CONSUMER_UNEARNED
C = ledger.PLATFORM_COMMISSION


@pytest.fixture
def merchant_ids(db: Database) -> list[int]:
    with db.transaction() as session:
        category = Category(name="美食", commission_bp=600)
        session.add(category)
        session.flush()
        return [make_merchant(session, category.id, f"商户{i}").id for i in range(3)]


@pytest.fixture
def session(db: Database, merchant_ids: list[int]) -> Iterator[Session]:
    """One transaction, rolled back at the end (nothing reaches the deferred PG checks).

    Takes ``merchant_ids`` so the merchants are committed before this (SQLite) write lock."""
    s = db.session()
    s.begin()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# --- posting -----------------------------------------------------------------------------------


def test_balanced_posting_and_balances(db: Database, merchant_ids: list[int]) -> None:
    m = merchant_ids[0]
    with db.transaction() as session:
        txn = ledger.post(
            session,
            "adjustment",
            [("provider:sandbox", 1000), (U, -700), (ledger.merchant_payable(m), -300)],
            key="t1",
            memo="测试",
        )
        assert sorted(ledger.entries_of(txn)) == sorted(
            [("provider:sandbox", 1000), (U, -700), (f"merchant_payable:{m}", -300)]
        )
    with db.transaction(readonly=True) as session:
        assert ledger.balance(session, "provider:sandbox") == 1000
        assert ledger.balance(session, U) == -700
        assert ledger.balance(session, U, natural=True) == 700
        assert ledger.balance(session, ledger.merchant_payable(m), natural=True) == 300
        assert ledger.balance(session, "provider:wechatpay") == 0  # never used
        assert ledger.balances(session, "merchant_payable:") == {f"merchant_payable:{m}": -300}
        assert ledger.balances(session, "provider:", natural=True) == {"provider:sandbox": 1000}
        assert sum(ledger.balances(session).values()) == 0
        account = session.scalar(
            select(LedgerAccount).where(LedgerAccount.code == f"merchant_payable:{m}")
        )
        assert account is not None
        assert (account.type, account.merchant_id) == ("liability", m)
        assert ledger.unbalanced_transactions(session) == []


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([], "ledger_empty"),
        ([("provider:sandbox", 100)], "ledger_empty"),
        ([("provider:sandbox", 100), (U, -99)], "ledger_unbalanced"),
        ([("provider:sandbox", 100), (U, -100), (C, 0)], "ledger_bad_amount"),
        ([("provider:sandbox", 100.0), (U, -100)], "ledger_bad_amount"),
        ([("provider:sandbox", True), (U, -1)], "ledger_bad_amount"),
        ([(U, 100), (U, -100)], "ledger_duplicate_account"),
        ([("bank", 100), (U, -100)], "ledger_unknown_account"),
        ([("merchant_payable:abc", 100), (U, -100)], "ledger_unknown_account"),
        ([("merchant_payable:007", 100), (U, -100)], "ledger_unknown_account"),
        ([("provider:", 100), (U, -100)], "ledger_unknown_account"),
    ],
)
def test_unbalanced_or_malformed_postings_are_refused(
    db: Database, entries: list[tuple[str, Any]], code: str
) -> None:
    with pytest.raises(ValidationFailed) as err, db.transaction() as session:
        ledger.post(session, "adjustment", entries, key="bad")
    assert err.value.code == code
    with db.transaction(readonly=True) as session:
        assert count(session, LedgerTransaction) == 0
        assert count(session, LedgerEntry) == 0


def test_unknown_kind_and_missing_key_are_refused(session: Session) -> None:
    entries = [("provider:sandbox", 1), (U, -1)]
    with pytest.raises(ValidationFailed):
        ledger.post(session, "gift", entries, key="k")
    with pytest.raises(ValidationFailed):
        ledger.post(session, "adjustment", entries, key="")


def test_replay_with_the_same_key_posts_once(db: Database) -> None:
    entries = [("provider:sandbox", 500), (U, -500)]
    with db.transaction() as session:
        first = ledger.post(session, "payment_received", entries, key="payment:P1", payment_no="P1")
    with db.transaction() as session:
        again = ledger.post(
            session, "payment_received", list(reversed(entries)), key="payment:P1", payment_no="P1"
        )
        assert again.id == first.id
        with pytest.raises(Conflict) as err:
            ledger.post(
                session,
                "payment_received",
                [("provider:sandbox", 501), (U, -501)],
                key="payment:P1",
                payment_no="P1",
            )
        assert err.value.code == "ledger_key_conflict"
        with pytest.raises(Conflict):  # same entries, different event
            ledger.post(session, "payment_received", entries, key="payment:P1", payment_no="P2")
    with db.transaction(readonly=True) as session:
        assert count(session, LedgerTransaction) == 1
        assert ledger.balance(session, "provider:sandbox") == 500


def test_concurrent_posts_of_one_key_post_once(db: Database) -> None:
    """Eight threads post the same event at once: one transaction, everyone gets its id."""
    barrier = threading.Barrier(8)
    ids: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            with db.transaction() as session:
                txn = ledger.post_payment_received(
                    session, payment_no="P-race", provider="wechatpay", amount_fen=999
                )
                assert txn is not None
                ids.append(txn.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(ids)) == 1 and len(ids) == 8
    with db.transaction(readonly=True) as session:
        assert count(session, LedgerTransaction) == 1
        assert ledger.balance(session, "provider:wechatpay") == 999


def test_concurrent_earnings_never_exceed_the_payment(
    db: Database, merchant_ids: list[int]
) -> None:
    """Six threads each try to earn 400 of a 1000 payment: at most two succeed."""
    with db.transaction() as session:
        ledger.post_payment_received(
            session, payment_no="P-split", provider="sandbox", amount_fen=1000
        )
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            with db.transaction() as session:
                ledger.post_earned(
                    session,
                    key=f"earned:line:{i}",
                    payment_no="P-split",
                    merchant_id=merchant_ids[0],
                    gross_fen=400,
                    commission_bp=600,
                )
            outcomes.append("ok")
        except Conflict as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 2, outcomes
    assert outcomes.count("ledger_exceeds_unearned") == 4
    with db.transaction(readonly=True) as session:
        assert ledger.balance(session, U, natural=True) == 200


# --- immutability ------------------------------------------------------------------------------


def test_ledger_rows_cannot_be_changed_or_deleted(db: Database, backend: str) -> None:
    with db.transaction() as session:
        txn = ledger.post_payment_received(
            session, payment_no="P1", provider="sandbox", amount_fen=100
        )
        assert txn is not None
        txn_id = txn.id
    # The ORM refuses (there is no update path in the service either).
    with pytest.raises(LedgerImmutable), db.transaction() as session:
        session.get(LedgerTransaction, txn_id).memo = "改一下"  # type: ignore[union-attr]
    with pytest.raises(LedgerImmutable), db.transaction() as session:
        entry = session.scalars(select(LedgerEntry)).first()
        entry.amount_fen = 1  # type: ignore[union-attr]
    with pytest.raises(LedgerImmutable), db.transaction() as session:
        session.delete(session.get(LedgerTransaction, txn_id))
    # So does the database, for anyone going around the ORM.
    for statement in (
        "UPDATE ledger_entries SET amount_fen = amount_fen * 2",
        "UPDATE ledger_transactions SET memo = 'x'",
        "UPDATE ledger_accounts SET type = 'asset'",
    ):
        with pytest.raises(IntegrityError), db.transaction() as session:
            session.execute(text(statement))
    if backend == "postgresql":
        with pytest.raises(IntegrityError), db.transaction() as session:
            session.execute(text("DELETE FROM ledger_entries"))
    with db.transaction(readonly=True) as session:
        assert ledger.balance(session, "provider:sandbox") == 100
        assert session.get(LedgerTransaction, txn_id).memo == ""  # type: ignore[union-attr]


def test_reversal_restores_balances_once(db: Database, merchant_ids: list[int]) -> None:
    m = merchant_ids[0]
    with db.transaction() as session:
        ledger.post_payment_received(
            session, payment_no="P1", provider="sandbox", amount_fen=10_000
        )
        earned = ledger.post_earned(
            session,
            key="earned:line:1",
            payment_no="P1",
            merchant_id=m,
            gross_fen=10_000,
            commission_bp=600,
        )
        assert earned is not None
        before = ledger.balances(session)
        reversal = ledger.reverse(session, earned.id, key="reverse:1", memo="误操作")
        assert reversal.kind == "reversal" and reversal.related_id == earned.id
        assert sorted(ledger.entries_of(reversal)) == sorted(
            (c, -a) for c, a in ledger.entries_of(earned)
        )
        after = ledger.balances(session)
        assert after[U] == before[U] - 10_000 == -10_000
        assert after[C] == 0 and after[ledger.merchant_payable(m)] == 0
        # Same key again: the same reversal. A second reversal under another key: refused.
        assert ledger.reverse(session, earned.id, key="reverse:1", memo="误操作").id == reversal.id
        with pytest.raises(Conflict) as err:
            ledger.reverse(session, earned.id, key="reverse:2")
        assert err.value.code == "ledger_already_reversed"
        with pytest.raises(NotFound):
            ledger.reverse(session, 999_999, key="reverse:3")
    # The database refuses a second reversal too (partial unique index), even past the service.
    with pytest.raises(IntegrityError), db.transaction() as session:
        ledger.post(
            session,
            "reversal",
            [(U, -10_000), (C, 600), (ledger.merchant_payable(m), 9_400)],
            key="sneaky",
            related_id=earned.id,
        )
    with db.transaction(readonly=True) as session:
        assert ledger.unbalanced_transactions(session) == []
        assert count(session, LedgerTransaction) == 3


def test_the_audit_finds_an_unbalanced_transaction(session: Session) -> None:
    """``unbalanced_transactions`` can fail: write a bad one around the service (not committed)."""
    txn = ledger.post_payment_received(session, payment_no="P1", provider="sandbox", amount_fen=5)
    assert txn is not None
    assert ledger.unbalanced_transactions(session) == []
    account_id = ledger.ensure_accounts(session, [U])[U]
    session.add(
        LedgerEntry(transaction_id=txn.id, account_id=account_id, amount_fen=3, created_at=utcnow())
    )
    session.flush()
    assert ledger.unbalanced_transactions(session) == [txn.id]


def test_postgres_refuses_to_commit_an_unbalanced_transaction(db: Database, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("deferred constraint triggers are PostgreSQL's; SQLite relies on the service")
    with pytest.raises(IntegrityError, match="does not balance"), db.transaction() as session:
        txn = ledger.post_payment_received(
            session, payment_no="P1", provider="sandbox", amount_fen=5
        )
        assert txn is not None
        account_id = ledger.ensure_accounts(session, [U])[U]
        session.add(
            LedgerEntry(
                transaction_id=txn.id, account_id=account_id, amount_fen=3, created_at=utcnow()
            )
        )
    with pytest.raises(IntegrityError, match="does not balance"), db.transaction() as session:
        session.add(LedgerTransaction(kind="adjustment", idempotency_key="empty", fingerprint="-"))
    with db.transaction(readonly=True) as session:
        assert count(session, LedgerTransaction) == 0


# --- the money flows ---------------------------------------------------------------------------


def test_payment_earning_refunds_and_payout(session: Session, merchant_ids: list[int]) -> None:
    m = merchant_ids[0]
    payable = ledger.merchant_payable(m)
    ledger.post_payment_received(
        session, payment_no="P1", provider="wechatpay", amount_fen=15_000, order_no="O1"
    )
    assert ledger.payment_position(session, "P1") == ledger.PaymentPosition(
        "wechatpay", 15_000, 0, 15_000
    )
    earned = ledger.post_earned(
        session,
        key="earned:voucher:1",
        payment_no="P1",
        merchant_id=m,
        gross_fen=10_000,
        commission_bp=600,
        order_no="O1",
        line_id=7,
    )
    assert earned is not None
    assert dict(ledger.entries_of(earned)) == {U: 10_000, payable: -9_400, C: -600}
    assert (earned.order_no, earned.payment_no, earned.line_id, earned.merchant_id) == (
        "O1",
        "P1",
        7,
        m,
    )
    # Refund of the unearned 5,000 (before earning): straight back through WeChat Pay.
    with pytest.raises(Conflict) as err:
        ledger.post_refund_before_earned(session, refund_no="R0", payment_no="P1", amount_fen=5_001)
    assert err.value.code == "ledger_refund_exceeds_unearned"
    ledger.post_refund_before_earned(session, refund_no="R1", payment_no="P1", amount_fen=5_000)
    assert ledger.balance(session, "provider:wechatpay") == 10_000
    assert ledger.balance(session, U) == 0
    with pytest.raises(Conflict):  # nothing left unearned to earn
        ledger.post_earned(
            session, key="earned:x", payment_no="P1", merchant_id=m, gross_fen=1, commission_bp=0
        )
    # Refund after earning, in three parts: the commission comes back in proportion, exactly.
    parts = [3_333, 3_333, 3_334]
    backs = []
    for i, part in enumerate(parts):
        txn = ledger.post_refund_after_earned(
            session, refund_no=f"R{i + 2}", earned_key="earned:voucher:1", amount_fen=part
        )
        assert txn is not None and txn.related_id == earned.id and txn.kind == "refund"
        entries = dict(ledger.entries_of(txn))
        assert entries["provider:wechatpay"] == -part
        backs.append(entries[C])
    assert backs == [200, 200, 200]  # 600 × 3333/10000 = 199.98 → 200 …, and the total is 600
    assert ledger.balance(session, C) == 0
    assert ledger.balance(session, payable) == 0
    assert ledger.balance(session, "provider:wechatpay") == 0
    with pytest.raises(Conflict) as err:
        ledger.post_refund_after_earned(
            session, refund_no="R9", earned_key="earned:voucher:1", amount_fen=1
        )
    assert err.value.code == "ledger_refund_exceeds_earned"
    assert ledger.unbalanced_transactions(session) == []


def test_many_small_refunds_give_back_exactly_the_commission(
    session: Session, merchant_ids: list[int]
) -> None:
    """3 fen at 50%: commission 2 fen (rounded half up); refunded 1 fen at a time, the three
    refunds give back 1 + 0 + 1 = 2, never 0 + 0 + 0 nor 1 + 1 + 1."""
    ledger.post_payment_received(session, payment_no="P1", provider="sandbox", amount_fen=3)
    ledger.post_earned(
        session,
        key="e",
        payment_no="P1",
        merchant_id=merchant_ids[0],
        gross_fen=3,
        commission_bp=5_000,
    )
    assert ledger.balance(session, C, natural=True) == 2
    backs = []
    for i in range(3):
        txn = ledger.post_refund_after_earned(
            session, refund_no=f"R{i}", earned_key="e", amount_fen=1
        )
        assert txn is not None
        backs.append(dict(ledger.entries_of(txn)).get(C, 0))
    assert sum(backs) == 2 and max(backs) == 1
    assert ledger.balance(session, C) == 0
    assert ledger.balance(session, ledger.merchant_payable(merchant_ids[0])) == 0


def test_payout_is_limited_to_the_payable(session: Session, merchant_ids: list[int]) -> None:
    m = merchant_ids[1]
    ledger.post_payment_received(session, payment_no="P1", provider="sandbox", amount_fen=1_000)
    ledger.post_earned(
        session, key="e1", payment_no="P1", merchant_id=m, gross_fen=1_000, commission_bp=1_000
    )
    with pytest.raises(Conflict) as err:
        ledger.post_payout(session, payout_no="PO1", merchant_id=m, amount_fen=901)
    assert err.value.code == "ledger_payout_exceeds"
    txn = ledger.post_payout(
        session, payout_no="PO1", merchant_id=m, amount_fen=900, via="wechat_profit_sharing"
    )
    assert txn is not None and txn.memo == "微信支付分账"
    assert ledger.post_payout(session, payout_no="PO1", merchant_id=m, amount_fen=900) is txn
    balance = ledger.merchant_balance(session, m)
    assert (balance.payable_fen, balance.paid_out_fen, balance.commission_fen) == (0, 900, 100)
    # The provider account mirrors the trade bill: payouts do not touch it.
    assert ledger.balance(session, "provider:sandbox") == 1_000
    with pytest.raises(ValidationFailed):
        ledger.post_payout(session, payout_no="PO2", merchant_id=m, amount_fen=1, via="cash")


def test_guards_on_missing_or_bad_references(session: Session, merchant_ids: list[int]) -> None:
    with pytest.raises(Conflict) as err:
        ledger.post_earned(
            session, key="e", payment_no="nope", merchant_id=1, gross_fen=1, commission_bp=0
        )
    assert err.value.code == "ledger_payment_not_posted"
    with pytest.raises(NotFound):
        ledger.post_refund_after_earned(session, refund_no="R", earned_key="nope", amount_fen=1)
    with pytest.raises(ValidationFailed):
        ledger.post_payment_received(session, payment_no="P", provider="sandbox", amount_fen=-1)
    with pytest.raises(ValidationFailed):
        ledger.post_payment_received(session, payment_no="P", provider="pay pal", amount_fen=1)
    ledger.post_payment_received(session, payment_no="P", provider="sandbox", amount_fen=10)
    with pytest.raises(ValidationFailed):
        ledger.post_earned(
            session,
            key="e",
            payment_no="P",
            merchant_id=merchant_ids[0],
            gross_fen=1,
            commission_bp=10_001,
        )
    # Zero moves nothing and posts nothing.
    assert (
        ledger.post_payment_received(session, payment_no="Z", provider="sandbox", amount_fen=0)
        is None
    )
    assert count(session, LedgerTransaction) == 1


def test_balance_until_a_time(session: Session) -> None:
    now = utcnow()
    ledger.post(
        session,
        "adjustment",
        [("provider:sandbox", 100), (U, -100)],
        key="old",
        at=now - timedelta(days=3),
    )
    ledger.post(session, "adjustment", [("provider:sandbox", 50), (U, -50)], key="new", at=now)
    assert ledger.balance(session, "provider:sandbox", until=now - timedelta(days=1)) == 100
    assert ledger.balance(session, "provider:sandbox") == 150
    assert ledger.balances(session, "provider:", until=now - timedelta(days=4)) == {
        "provider:sandbox": 0
    }


# --- property: any sequence of money events keeps the books right ------------------------------


@dataclass
class Line:
    id: int
    payment_no: str
    merchant_id: int
    gross: int
    bp: int
    refunded_before: int = 0
    earned: int = 0
    refunded_after: int = 0

    @property
    def earned_key(self) -> str:
        return f"earned:line:{self.id}"


@dataclass
class Model:
    payments: dict[str, tuple[str, int]] = field(default_factory=dict)  # no → (provider, amount)
    refunds: dict[str, int] = field(default_factory=dict)  # provider → refunded
    lines: list[Line] = field(default_factory=list)
    payouts: dict[int, int] = field(default_factory=dict)
    payout_nos: list[tuple[str, int, int]] = field(default_factory=list)
    calls: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    serial: int = 0

    def next(self) -> int:
        self.serial += 1
        return self.serial


def check_books(session: Session, model: Model, merchants: list[int]) -> None:
    """The identities of ``o2o.ledger.service``, in natural signs, after every step."""
    assert ledger.unbalanced_transactions(session) == []
    nat = ledger.balances(session, natural=True)
    paid = sum(a for _, a in model.payments.values())
    refunded = sum(model.refunds.values())
    paid_out = sum(model.payouts.values())
    # 1. Each provider account == payments − refunds through that provider.
    for provider in ("sandbox", "wechatpay"):
        received = sum(a for p, a in model.payments.values() if p == provider)
        assert nat.get(f"provider:{provider}", 0) == received - model.refunds.get(provider, 0)
    payable = sum(nat.get(ledger.merchant_payable(m), 0) for m in merchants)
    commission = nat.get(C, 0)
    unearned = nat.get(U, 0)
    # 2. Σ merchant payable + platform commission + consumer unearned
    #    == net money received = payments − refunds − payouts.
    assert payable + commission + unearned == paid - refunded - paid_out
    # 3. Its parts: unearned is exactly what no line has earned or refunded yet …
    assert unearned == sum(ln.gross - ln.refunded_before - ln.earned for ln in model.lines)
    # … and payable + commission is what was earned, net of refunds after earning, less payouts.
    assert payable + commission == sum(ln.earned - ln.refunded_after for ln in model.lines) - (
        paid_out
    )
    for m in merchants:
        assert nat.get(ledger.merchant_paid_out(m), 0) == model.payouts.get(m, 0)
    # 4. Per earned line, the commission kept is within [0, full], full when nothing was refunded
    #    and zero once everything was refunded.
    # Commission entries per earned posting: its own and those of the refunds related to it.
    posting = func.coalesce(LedgerTransaction.related_id, LedgerTransaction.id)
    earned_ids = dict(
        session.execute(
            select(LedgerTransaction.idempotency_key, LedgerTransaction.id).where(
                LedgerTransaction.kind == "earned"
            )
        ).all()
    )
    commission_by_posting = dict(
        session.execute(
            select(posting, func.sum(LedgerEntry.amount_fen))
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerAccount.code == C, LedgerTransaction.kind.in_(["earned", "refund"]))
            .group_by(posting)
        ).all()
    )
    for ln in model.lines:
        if not ln.earned:
            continue
        kept = -int(commission_by_posting.get(earned_ids[ln.earned_key], 0))
        full = apply_rate(ln.earned, ln.bp)
        assert 0 <= kept <= full
        # … and within half a fen of the exact proportion full·(earned − refunded)/earned, however
        # many refunds it took (rounding must not drift).
        assert abs(2 * kept * ln.earned - 2 * full * (ln.earned - ln.refunded_after)) <= ln.earned
        if ln.refunded_after == 0:
            assert kept == full
        if ln.refunded_after == ln.earned:
            assert kept == 0


def part_of(remaining: int) -> st.SearchStrategy[int]:
    """Often all that is left (so lines get fully refunded in several parts), else some of it."""
    return st.one_of(
        st.just(remaining), st.integers(1, min(remaining, 3)), st.integers(1, remaining)
    )


amounts = st.one_of(st.integers(1, 5), st.integers(1, 200_000))
rates = st.one_of(st.sampled_from([0, 1, 600, 9_999, 10_000]), st.integers(0, 10_000))
# Weighted: earning and refunding after earning (where rounding lives) come up more often.
OPS = [
    "pay",
    "earn",
    "earn",
    "refund_before",
    "refund_after",
    "refund_after",
    "refund_in_parts",
    "payout",
    "payout_bounced",
    "replay",
    "too_much",
]


@hsettings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_books_balance_after_any_sequence_of_events(
    db: Database, merchant_ids: list[int], data: st.DataObject
) -> None:
    session = db.session()
    session.begin()
    model = Model()
    try:
        for _ in range(data.draw(st.integers(1, 20), label="steps")):
            step(session, model, merchant_ids, data, data.draw(st.sampled_from(OPS), label="op"))
            check_books(session, model, merchant_ids)
    finally:
        session.rollback()
        session.close()


def call(session: Session, model: Model, fn: Any, **kw: Any) -> Any:
    model.calls.append((fn, kw))
    return fn(session, **kw)


def step(session: Session, model: Model, merchants: list[int], data: Any, op: str) -> None:
    draw = data.draw
    open_lines = [ln for ln in model.lines if not ln.earned and ln.gross > ln.refunded_before]
    earned_lines = [ln for ln in model.lines if ln.earned > ln.refunded_after]
    if op == "pay" or not model.lines:
        provider = draw(st.sampled_from(["sandbox", "wechatpay"]))
        payment_no = f"P{model.next()}"
        lines = [
            Line(
                model.next(),
                payment_no,
                draw(st.sampled_from(merchants)),
                draw(amounts),
                draw(rates),
            )
            for _ in range(draw(st.integers(1, 3)))
        ]
        total = sum(ln.gross for ln in lines)
        call(
            session,
            model,
            ledger.post_payment_received,
            payment_no=payment_no,
            provider=provider,
            amount_fen=total,
        )
        model.payments[payment_no] = (provider, total)
        model.lines.extend(lines)
    elif op == "earn" and open_lines:
        ln = draw(st.sampled_from(open_lines))
        gross = ln.gross - ln.refunded_before
        call(
            session,
            model,
            ledger.post_earned,
            key=ln.earned_key,
            payment_no=ln.payment_no,
            merchant_id=ln.merchant_id,
            gross_fen=gross,
            commission_bp=ln.bp,
            line_id=ln.id,
        )
        ln.earned = gross
    elif op == "refund_before" and open_lines:
        ln = draw(st.sampled_from(open_lines))
        amount = draw(part_of(ln.gross - ln.refunded_before))
        call(
            session,
            model,
            ledger.post_refund_before_earned,
            refund_no=f"R{model.next()}",
            payment_no=ln.payment_no,
            amount_fen=amount,
        )
        ln.refunded_before += amount
        provider = model.payments[ln.payment_no][0]
        model.refunds[provider] = model.refunds.get(provider, 0) + amount
    elif op == "refund_after" and earned_lines:
        ln = draw(st.sampled_from(earned_lines))
        amount = draw(part_of(ln.earned - ln.refunded_after))
        call(
            session,
            model,
            ledger.post_refund_after_earned,
            refund_no=f"R{model.next()}",
            earned_key=ln.earned_key,
            amount_fen=amount,
        )
        ln.refunded_after += amount
        provider = model.payments[ln.payment_no][0]
        model.refunds[provider] = model.refunds.get(provider, 0) + amount
    elif op == "refund_in_parts" and earned_lines:
        # The rest of an earned line refunded in 2–4 parts (each posting rounds its own share).
        ln = draw(st.sampled_from(earned_lines))
        remaining = ln.earned - ln.refunded_after
        cuts = sorted(set(draw(st.lists(st.integers(1, max(remaining - 1, 1)), max_size=3))))
        bounds = [0, *(c for c in cuts if c < remaining), remaining]
        for part in (b - a for a, b in itertools.pairwise(bounds)):
            call(
                session,
                model,
                ledger.post_refund_after_earned,
                refund_no=f"R{model.next()}",
                earned_key=ln.earned_key,
                amount_fen=part,
            )
            ln.refunded_after += part
            provider = model.payments[ln.payment_no][0]
            model.refunds[provider] = model.refunds.get(provider, 0) + part
    elif op == "payout":
        m = draw(st.sampled_from(merchants))
        payable = ledger.balance(session, ledger.merchant_payable(m), natural=True)
        if payable > 0:
            amount = draw(part_of(payable))
            payout_no = f"PO{model.next()}"
            via = draw(st.sampled_from(["bank", "wechat_profit_sharing"]))
            call(
                session,
                model,
                ledger.post_payout,
                payout_no=payout_no,
                merchant_id=m,
                amount_fen=amount,
                via=via,
            )
            model.payouts[m] = model.payouts.get(m, 0) + amount
            model.payout_nos.append((payout_no, m, amount))
    elif op == "payout_bounced" and model.payout_nos:
        # The bank returned a transfer: the payout is reversed (once).
        payout_no, m, amount = model.payout_nos.pop(draw(st.integers(0, len(model.payout_nos) - 1)))
        txn = ledger.transaction_by_key(session, f"payout:{payout_no}")
        assert txn is not None
        ledger.reverse(session, txn.id, key=f"bounced:{payout_no}")
        model.payouts[m] -= amount
    elif op == "replay" and model.calls:
        # Any event delivered again changes nothing.
        fn, kw = draw(st.sampled_from(model.calls))
        before = ledger.balances(session)
        transactions = count(session, LedgerTransaction)
        fn(session, **kw)
        assert ledger.balances(session) == before
        assert count(session, LedgerTransaction) == transactions
    elif op == "too_much":
        # Over-refunds and over-earnings are refused and change nothing.
        before = ledger.balances(session)
        if open_lines:
            ln = draw(st.sampled_from(open_lines))
            position = ledger.payment_position(session, ln.payment_no)
            with pytest.raises(Conflict):
                ledger.post_refund_before_earned(
                    session,
                    refund_no="X",
                    payment_no=ln.payment_no,
                    amount_fen=position.unearned_fen + 1,
                )
            with pytest.raises(Conflict):
                ledger.post_earned(
                    session,
                    key="earned:too-much",
                    payment_no=ln.payment_no,
                    merchant_id=ln.merchant_id,
                    gross_fen=position.unearned_fen + 1,
                    commission_bp=ln.bp,
                )
        if earned_lines:
            ln = draw(st.sampled_from(earned_lines))
            with pytest.raises(Conflict):
                ledger.post_refund_after_earned(
                    session,
                    refund_no="X",
                    earned_key=ln.earned_key,
                    amount_fen=ln.earned - ln.refunded_after + 1,
                )
        assert ledger.balances(session) == before


# --- API ---------------------------------------------------------------------------------------


def _post_some_books(world: Any) -> None:
    a, b = world.a.id, world.b.id
    with world.db.transaction() as session:
        ledger.post_payment_received(
            session, payment_no="P1", provider="wechatpay", amount_fen=20_000, order_no="O1"
        )
        ledger.post_earned(
            session,
            key="earned:line:1",
            payment_no="P1",
            merchant_id=a,
            gross_fen=12_000,
            commission_bp=600,
            order_no="O1",
        )
        ledger.post_earned(
            session,
            key="earned:line:2",
            payment_no="P1",
            merchant_id=b,
            gross_fen=8_000,
            commission_bp=500,
            order_no="O2",
        )
        ledger.post_payout(session, payout_no="PO1", merchant_id=a, amount_fen=10_000)


def test_operator_sees_accounts_and_transactions(api: Any, world: Any) -> None:
    _post_some_books(world)
    op = world.tokens["operator"]
    a, b = world.a.id, world.b.id
    r = api.get("/api/v1/admin/ledger/accounts", as_=op)
    assert r.status_code == 200, r.text
    accounts = {x["code"]: x for x in r.json()["items"]}
    assert {code: x["balance_fen"] for code, x in accounts.items()} == {
        "provider:wechatpay": 20_000,
        U: 0,
        f"merchant_payable:{a}": 11_280 - 10_000,
        C: 720 + 400,
        f"merchant_payable:{b}": 7_600,
        f"merchant_paid_out:{a}": 10_000,
    }
    assert accounts["provider:wechatpay"]["label"] == "支付渠道资金 · 微信支付"
    assert accounts[f"merchant_paid_out:{a}"]["type"] == "contra_asset"
    assert accounts[f"merchant_payable:{b}"]["merchant_id"] == b
    only = api.get("/api/v1/admin/ledger/accounts?prefix=merchant_payable:", as_=op).json()
    assert len(only["items"]) == 2
    page = api.get("/api/v1/admin/ledger/accounts?limit=4", as_=op).json()
    rest = api.get(f"/api/v1/admin/ledger/accounts?cursor={page['next_cursor']}", as_=op).json()
    assert len(page["items"]) + len(rest["items"]) == 6

    txns = api.get("/api/v1/admin/ledger/transactions", as_=op).json()["items"]
    assert [t["kind"] for t in txns] == ["payout", "earned", "earned", "payment_received"]
    assert sum(e["amount_fen"] for t in txns for e in t["entries"]) == 0
    earned = api.get("/api/v1/admin/ledger/transactions?order_no=O1&kind=earned", as_=op).json()
    [line] = earned["items"]
    assert {e["account_code"]: e["amount_fen"] for e in line["entries"]} == {
        U: 12_000,
        f"merchant_payable:{a}": -11_280,
        C: -720,
    }
    assert (line["payment_no"], line["merchant_id"]) == ("P1", a)
    first = api.get("/api/v1/admin/ledger/transactions?limit=3", as_=op).json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    last = api.get(
        f"/api/v1/admin/ledger/transactions?limit=3&cursor={first['next_cursor']}", as_=op
    ).json()
    assert [t["kind"] for t in last["items"]] == ["payment_received"]
    assert last["next_cursor"] is None
    by_merchant = api.get(f"/api/v1/admin/ledger/transactions?merchant_id={b}", as_=op).json()
    assert [t["idempotency_key"] for t in by_merchant["items"]] == ["earned:line:2"]


def test_merchant_sees_its_own_balance(api: Any, world: Any) -> None:
    _post_some_books(world)
    a = world.a.id
    for role in ("owner", "manager"):
        r = api.get(f"/api/v1/merchants/{a}/ledger/balance", as_=world.tokens[role])
        assert r.status_code == 200, r.text
        assert r.json() == {
            "merchant_id": a,
            "payable_fen": 1_280,
            "paid_out_fen": 10_000,
            "commission_fen": 720,
        }
    for role in ("clerk", "other_manager", "consumer"):
        r = api.get(f"/api/v1/merchants/{a}/ledger/balance", as_=world.tokens[role])
        assert r.status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "accounts?limit=0",
        "accounts?limit=101",
        "accounts?cursor=-1",
        "accounts?prefix=%25",
        "transactions?kind=gift",
        "transactions?cursor=1e9",
        "transactions?merchant_id=99999999999999999999999",
        "transactions?order_no=" + "x" * 41,
        "transactions?order_no=%00",
    ],
)
def test_bad_ledger_queries_are_a_422(api: Any, world: Any, query: str) -> None:
    r = api.get(f"/api/v1/admin/ledger/{query}", as_=world.tokens["operator"])
    assert r.status_code == 422, r.text
