"""结算单: statements per merchant per period, exact to the fen against the ledger, generated
idempotently by the worker (also several at once), refunds after earning netted into the next
statement, marked paid once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.config import Settings
from o2o.db import Database
from o2o.ledger import service as ledger
from o2o.ledger.models import LedgerTransaction
from o2o.money import apply_rate
from o2o.settlement import service
from o2o.settlement.models import SettlementLine, SettlementStatement
from o2o.timeutil import CHINA_TZ
from tests.conftest import make_settings

PROBLEM = "application/problem+json"
# Day 1 of the tests, 10:00 Beijing time (periods start at Beijing midnight).
DAY1 = datetime(2025, 3, 10, 10, 0, tzinfo=CHINA_TZ)


class Clock:
    """The ledger's clock, moved by the test (postings cannot be backdated otherwise)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def day(self, n: int, hour: int = 10) -> datetime:
        self.now = DAY1.replace(hour=hour) + timedelta(days=n - 1)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(DAY1)
    monkeypatch.setattr(ledger, "utcnow", c)
    return c


def earn(
    db: Database, merchant_id: int, payment_no: str, lines: list[tuple[int, int]]
) -> list[str]:
    """A payment of the lines' total, then each line (gross, commission bp) earned."""
    keys = []
    with db.transaction() as session:
        ledger.post_payment_received(
            session,
            payment_no=payment_no,
            provider="sandbox",
            amount_fen=sum(g for g, _ in lines),
            order_no=f"O{payment_no}",
        )
        for i, (gross, bp) in enumerate(lines):
            key = f"earned:test:{payment_no}:{i}"
            ledger.post_earned(
                session,
                key=key,
                payment_no=payment_no,
                merchant_id=merchant_id,
                gross_fen=gross,
                commission_bp=bp,
                order_no=f"O{payment_no}",
                line_id=i + 1,
            )
            keys.append(key)
    return keys


def refund_after(db: Database, refund_no: str, earned_key: str, amount: int) -> None:
    with db.transaction() as session:
        ledger.post_refund_after_earned(
            session, refund_no=refund_no, earned_key=earned_key, amount_fen=amount
        )


def statements(db: Database, merchant_id: int) -> list[SettlementStatement]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(SettlementStatement)
                .where(SettlementStatement.merchant_id == merchant_id)
                .order_by(SettlementStatement.period_start, SettlementStatement.sequence)
            )
        )


def ledger_net_credited(db: Database, merchant_id: int) -> int:
    """Σ of what the ledger credited the merchant's payable outside payouts (natural sign)."""
    with db.transaction(readonly=True) as session:
        b = ledger.merchant_balance(session, merchant_id)
        return b.payable_fen + b.paid_out_fen


def run_job(db: Database, settings: Settings, at: datetime) -> int:
    return service.generate_statements(db, settings, now=at)


# --- generation --------------------------------------------------------------------------------


def test_statement_is_exact_to_the_fen(
    db: Database, settings: Settings, world: Any, clock: Clock
) -> None:
    a, b = world.a.id, world.b.id
    keys = earn(db, a, "PA1", [(3333, 600), (6667, 600), (1, 600)])
    earn(db, b, "PB1", [(5000, 250)])
    clock.day(1, 23)
    earn(db, a, "PA2", [(999, 1234)])

    # The period has not ended: nothing yet.
    assert run_job(db, settings, clock.day(1, 23)) == 0
    assert run_job(db, settings, clock.day(2, 9)) == 2

    [sa] = statements(db, a)
    commission = apply_rate(3333, 600) + apply_rate(6667, 600) + apply_rate(1, 600)
    commission += apply_rate(999, 1234)
    assert (sa.line_count, sa.gross_fen, sa.commission_fen, sa.refunds_fen) == (
        4,
        3333 + 6667 + 1 + 999,
        commission,
        0,
    )
    assert sa.net_fen == sa.payable_fen == 11000 - commission
    assert sa.status == "ready"
    assert sa.period_start == DAY1.replace(hour=0)
    assert sa.period_end == DAY1.replace(hour=0) + timedelta(days=1)
    assert sa.statement_no == f"ST20250310-{a}-1"
    [sb] = statements(db, b)
    assert (sb.gross_fen, sb.commission_fen, sb.net_fen) == (5000, 125, 4875)
    # Σ net == what post_earned credited each merchant's payable.
    assert ledger_net_credited(db, a) == sa.net_fen
    assert ledger_net_credited(db, b) == sb.net_fen
    with db.transaction(readonly=True) as session:
        lines = service.lines_of(session, sa.id)
        earned = {
            t.id
            for t in session.scalars(
                select(LedgerTransaction).where(LedgerTransaction.idempotency_key.in_(keys))
            )
        }
        assert earned <= {line.transaction_id for line in lines}
        assert sum(line.net_fen for line in lines) == sa.net_fen

    # Idempotent: running again (any later time) makes nothing new.
    assert run_job(db, settings, clock.day(2, 9)) == 0
    assert run_job(db, settings, clock.day(5)) == 0
    assert len(statements(db, a)) == 1


def test_cycle_of_several_days(
    db: Database, db_url: str, tmp_path: Any, world: Any, clock: Clock
) -> None:
    settings = make_settings(db_url, tmp_path, settlement_cycle_days=3)
    a = world.a.id
    start, end = service.period_of(DAY1, 3)
    assert end - start == timedelta(days=3)
    clock.now = start + timedelta(hours=1)
    earn(db, a, "P1", [(1000, 0)])
    clock.now = start + timedelta(days=2, hours=23)
    earn(db, a, "P2", [(2000, 0)])
    assert run_job(db, settings, end - timedelta(minutes=1)) == 0
    assert run_job(db, settings, end + timedelta(minutes=10)) == 1
    [s] = statements(db, a)
    assert (s.line_count, s.net_fen, s.period_end) == (2, 3000, end)


def test_refunds_after_earning_reduce_the_next_statement(
    db: Database, settings: Settings, world: Any, clock: Clock, api: Any
) -> None:
    a = world.a.id
    clock.day(1)
    k1, _k2 = earn(db, a, "P1", [(3333, 600), (6667, 600)])
    assert run_job(db, settings, clock.day(2, 1)) == 1
    clock.day(2)
    refund_after(db, "R1", k1, 1000)
    back = round(200 * 1000 / 3333)  # the commission given back with it
    assert run_job(db, settings, clock.day(3, 1)) == 1
    day1, day2 = statements(db, a)
    assert (day1.net_fen, day1.status) == (9400, "ready")
    assert (day2.gross_fen, day2.commission_fen, day2.refunds_fen) == (0, -back, 1000)
    assert day2.net_fen == day2.payable_fen == -(1000 - back)

    # Day 3 earns again: the negative day-2 statement is carried into it.
    clock.day(3)
    earn(db, a, "P3", [(5000, 600)])
    assert run_job(db, settings, clock.day(4, 1)) == 1
    day1, day2, day3 = statements(db, a)
    assert (day2.status, day2.carried_into_id) == ("carried", day3.id)
    assert day3.net_fen == 4700
    assert day3.carried_in_fen == -(1000 - back)
    assert day3.payable_fen == 4700 - (1000 - back)

    # Paying both statements pays exactly what the ledger owes the merchant.
    operator = world.tokens["operator"]
    for s in (day1, day3):
        r = api.post(
            f"/api/v1/admin/settlements/{s.statement_no}/mark-paid",
            json={"bank_reference": f"BANK-{s.id}"},
            as_=operator,
        )
        assert r.status_code == 200, r.text
    with db.transaction(readonly=True) as session:
        bal = ledger.merchant_balance(session, a)
    assert bal.payable_fen == 0
    assert bal.paid_out_fen == day1.payable_fen + day3.payable_fen
    assert sum(s.net_fen for s in statements(db, a)) == ledger_net_credited(db, a)
    # A carried statement is not paid on its own.
    r = api.post(
        f"/api/v1/admin/settlements/{day2.statement_no}/mark-paid",
        json={"bank_reference": "X"},
        as_=operator,
    )
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM


def test_a_posting_after_its_statement_goes_into_a_supplementary_one(
    db: Database, settings: Settings, world: Any, clock: Clock
) -> None:
    a = world.a.id
    clock.day(1)
    earn(db, a, "P1", [(1000, 0)])
    assert run_job(db, settings, clock.day(2, 1)) == 1
    # Stamped on day 1 but committed after day 1 was settled (a slow transaction).
    clock.day(1, 23)
    earn(db, a, "P2", [(500, 0)])
    assert run_job(db, settings, clock.day(2, 2)) == 1
    first, second = statements(db, a)
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.period_start == second.period_start
    assert (first.net_fen, second.net_fen) == (1000, 500)
    assert second.statement_no.endswith("-2")


def test_reversals_and_adjustments_are_settled_payouts_are_not(
    db: Database, settings: Settings, world: Any, clock: Clock
) -> None:
    a = world.a.id
    clock.day(1)
    keys = earn(db, a, "P1", [(1000, 1000), (2000, 1000)])
    with db.transaction() as session:
        earned = ledger.transaction_by_key(session, keys[1])
        assert earned is not None
        ledger.reverse(session, earned.id, key="rev:1")
        ledger.post_payout(session, payout_no="MANUAL-1", merchant_id=a, amount_fen=100)
    assert run_job(db, settings, clock.day(2, 1)) == 1
    [s] = statements(db, a)
    assert (s.line_count, s.gross_fen, s.commission_fen, s.net_fen) == (3, 1000, 100, 900)
    with db.transaction(readonly=True) as session:
        kinds = sorted(line.kind for line in service.lines_of(session, s.id))
    assert kinds == ["earned", "earned", "reversal"]
    assert s.net_fen == ledger_net_credited(db, a)


def test_several_workers_settle_each_posting_once(
    db: Database, settings: Settings, world: Any, clock: Clock
) -> None:
    clock.day(1)
    for i in range(6):
        earn(db, world.a.id if i % 2 else world.b.id, f"P{i}", [(100 + i, 500), (7, 500)])
    errors: list[BaseException] = []
    made: list[int] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            made.append(run_job(db, settings, clock.day(2, 1)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(made) == 2
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(SettlementStatement)) == 2
        assert session.scalar(select(func.count()).select_from(SettlementLine)) == 12
    for m in (world.a.id, world.b.id):
        assert sum(s.net_fen for s in statements(db, m)) == ledger_net_credited(db, m)


# --- API ---------------------------------------------------------------------------------------


def _make_two_days(db: Database, settings: Settings, world: Any, clock: Clock) -> None:
    clock.day(1)
    earn(db, world.a.id, "P1", [(1000, 600)])
    earn(db, world.b.id, "PB", [(2000, 600)])
    clock.day(2)
    earn(db, world.a.id, "P2", [(3000, 600)])
    run_job(db, settings, clock.day(3, 1))


def test_merchant_sees_its_own_statements(
    api: Any, db: Database, settings: Settings, world: Any, clock: Clock
) -> None:
    _make_two_days(db, settings, world, clock)
    a = world.a.id
    owner = world.tokens["owner"]
    r = api.get(f"/api/v1/merchants/{a}/settlements", as_=owner)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["net_fen"] for i in items] == [2820, 940]  # newest first
    assert items[0]["status_label"] == "待打款"

    page = api.get(f"/api/v1/merchants/{a}/settlements?limit=1", as_=owner).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = api.get(
        f"/api/v1/merchants/{a}/settlements?limit=1&cursor={page['next_cursor']}", as_=owner
    ).json()
    assert [i["net_fen"] for i in rest["items"]] == [940]

    no = items[1]["statement_no"]
    detail = api.get(f"/api/v1/merchants/{a}/settlements/{no}", as_=world.tokens["manager"])
    assert detail.status_code == 200, detail.text
    [line] = detail.json()["lines"]
    assert (line["kind"], line["gross_fen"], line["commission_fen"], line["net_fen"]) == (
        "earned",
        1000,
        60,
        940,
    )
    assert line["payment_no"] == "P1"

    # Another merchant's statement is not found through this merchant.
    [b_statement] = statements(db, world.b.id)
    r = api.get(f"/api/v1/merchants/{a}/settlements/{b_statement.statement_no}", as_=owner)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert (
        api.get(f"/api/v1/merchants/{a}/settlements", as_=world.tokens["clerk"]).status_code == 403
    )

    # Filter by status.
    api.post(
        f"/api/v1/admin/settlements/{no}/mark-paid",
        json={"bank_reference": "B1"},
        as_=world.tokens["operator"],
    )
    paid = api.get(f"/api/v1/merchants/{a}/settlements?status=paid", as_=owner).json()["items"]
    assert [i["statement_no"] for i in paid] == [no]


def test_operator_lists_and_marks_paid_once(
    api: Any, db: Database, settings: Settings, world: Any, clock: Clock
) -> None:
    _make_two_days(db, settings, world, clock)
    operator = world.tokens["operator"]
    listed = api.get("/api/v1/admin/settlements?status=ready", as_=operator).json()["items"]
    assert len(listed) == 3
    only_b = api.get(f"/api/v1/admin/settlements?merchant_id={world.b.id}", as_=operator).json()
    assert [i["merchant_id"] for i in only_b["items"]] == [world.b.id]

    no = only_b["items"][0]["statement_no"]
    paid_at = "2025-03-12T09:30:00+08:00"
    r = api.post(
        f"/api/v1/admin/settlements/{no}/mark-paid",
        json={"bank_reference": " 招行流水 0001 ", "paid_at": paid_at},
        as_=operator,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["bank_reference"], body["payout_via"]) == (
        "paid",
        "招行流水 0001",
        "bank",
    )
    assert datetime.fromisoformat(body["paid_at"]) == datetime.fromisoformat(paid_at)
    with db.transaction(readonly=True) as session:
        bal = ledger.merchant_balance(session, world.b.id)
        payout = ledger.transaction_by_key(session, f"payout:{no}")
    assert (bal.payable_fen, bal.paid_out_fen) == (0, 1880)
    assert payout is not None and payout.memo.startswith(f"结算单 {no}")

    again = api.post(
        f"/api/v1/admin/settlements/{no}/mark-paid", json={"bank_reference": "X"}, as_=operator
    )
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    assert again.json()["code"] == "invalid_transition"
    with db.transaction(readonly=True) as session:
        assert ledger.merchant_balance(session, world.b.id).paid_out_fen == 1880

    detail = api.get(f"/api/v1/admin/settlements/{no}", as_=operator).json()
    assert detail["status"] == "paid" and len(detail["lines"]) == 1


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("{no}/mark-paid", {}, 422),
        ("{no}/mark-paid", {"bank_reference": ""}, 422),
        ("{no}/mark-paid", {"bank_reference": "   "}, 422),
        ("{no}/mark-paid", {"bank_reference": "x" * 101}, 422),
        ("{no}/mark-paid", {"bank_reference": "B", "paid_at": "2999-01-01T00:00:00+08:00"}, 422),
        ("{no}/mark-paid", {"bank_reference": "B", "paid_at": "yesterday"}, 422),
        ("ST-NOPE/mark-paid", {"bank_reference": "B"}, 404),
        ("bad%20no/mark-paid", {"bank_reference": "B"}, 422),
        ("{no}/profit-sharing", None, 409),  # not configured for WeChat Pay partner mode
    ],
)
def test_bad_input_is_a_problem_and_changes_nothing(
    api: Any,
    db: Database,
    settings: Settings,
    world: Any,
    clock: Clock,
    path: str,
    body: Any,
    status: int,
) -> None:
    _make_two_days(db, settings, world, clock)
    [s] = statements(db, world.b.id)
    url = "/api/v1/admin/settlements/" + path.format(no=s.statement_no)
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    r = api.post(url, as_=world.tokens["operator"], **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    [after] = statements(db, world.b.id)
    assert (after.status, after.paid_at, after.payout_no) == ("ready", None, "")
    with db.transaction(readonly=True) as session:
        assert ledger.merchant_balance(session, world.b.id).paid_out_fen == 0


def test_merchant_settlement_queries_are_validated(api: Any, world: Any) -> None:
    a = world.a.id
    owner = world.tokens["owner"]
    for query in ("?status=lost", "?limit=0", "?limit=101", "?cursor=abc"):
        r = api.get(f"/api/v1/merchants/{a}/settlements{query}", as_=owner)
        assert r.status_code == 422, (query, r.text)
        assert r.headers["content-type"] == PROBLEM


def test_the_worker_runs_the_job(db: Database, settings: Settings, world: Any) -> None:
    from o2o.worker import load_jobs

    names = {j.name for j in load_jobs()}
    assert {"settlement_statements", "settlement_profit_sharing"} <= names
