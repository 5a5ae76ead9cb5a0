"""The worker downloads yesterday's WeChat Pay trade bill after 10:00 Beijing time, checks its
hash against the signed apply answer, reconciles and stores it (shown on the admin 对账 page),
retries while WeChat Pay is still generating it — once per day however many workers run.
Against the fake WeChat Pay server; both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.config import Settings
from o2o.db import Database
from o2o.settlement import bills
from o2o.settlement.models import ReconciliationImport, TradeBillDownload
from o2o.timeutil import CHINA_TZ, as_utc
from tests.checkout_support import make_goods
from tests.fakes.wechatpay_server import FakeWeChatPay
from tests.test_reconciliation import NOTIFY, pay
from tests.web.support import PageClient


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch) -> FakeWeChatPay:
    fake_server.reset()
    # The fake checks request timestamps against its clock, so it cannot move a day ahead:
    # today's bill is published at once instead, and the job is run "tomorrow".
    fake_server.bill_publish_delay = timedelta(0)
    for name, value in fake_server.provider_env(notify_url="http://testserver" + NOTIFY).items():
        monkeypatch.setenv(name, value)
    return fake_server


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    day = datetime.now(CHINA_TZ).date() + timedelta(days=1)
    return as_utc(datetime(day.year, day.month, day.day, hour, minute, tzinfo=CHINA_TZ))


def bill_requests(fake: FakeWeChatPay) -> int:
    return sum(1 for r in fake.requests if r.path == "/v3/bill/tradebill")


def downloads(db: Database) -> list[TradeBillDownload]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(TradeBillDownload)))


def imports(db: Database) -> list[ReconciliationImport]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(ReconciliationImport)))


@pytest.fixture
def today(api: Any, db: Database, world: Any, fake: FakeWeChatPay) -> list[str]:
    """Two WeChat Pay payments today."""
    return [
        pay(api, fake, world, make_goods(db, world.a.id, world.category_id, price_fen=fen))[0]
        for fen in (1999, 3001)
    ]


def test_yesterdays_bill_after_ten_reconciled_once_and_shown(
    app: Any, db: Database, settings: Settings, world: Any, fake: FakeWeChatPay, today: list[str]
) -> None:
    # Before 10:00 Beijing time the bill is not due: nothing is asked.
    assert bills.download_due(db, settings, now=tomorrow_at(9, 59)) == 0
    assert bill_requests(fake) == 0 and downloads(db) == []

    assert bills.download_due(db, settings, now=tomorrow_at(10, 5)) == 1
    [day] = downloads(db)
    assert (day.status, day.bill_date, day.attempts) == (
        "done",
        datetime.now(CHINA_TZ).date().isoformat(),
        1,
    )
    assert day.hash_type == "SHA1" and len(day.hash_value) == 40
    [stored] = imports(db)
    assert (stored.source, stored.imported_by, stored.id) == ("download", None, day.import_id)
    assert (stored.bill_rows, stored.matched, stored.finding_count) == (2, 2, 0)
    assert stored.bill_payments_fen == 5000

    # Once: later runs (this worker or another) do not fetch it again.
    assert bills.download_due(db, settings, now=tomorrow_at(11)) == 0
    assert bill_requests(fake) == 1 and len(imports(db)) == 1

    # The operator sees it on the 对账 page.
    with PageClient(app) as pages:
        html = pages.sign_in(world.operator_id).get("/admin/reconciliation").text
    assert 'data-testid="bill-downloads"' in html
    assert f'data-bill-date="{day.bill_date}" data-status="done"' in html
    assert 'data-source="download"' in html and "自动下载" in html


def test_not_yet_generated_is_retried(
    db: Database, settings: Settings, fake: FakeWeChatPay, today: list[str]
) -> None:
    fake.hold_bills()  # WeChat Pay late beyond 10:00: STATEMENT_CREATING
    first = tomorrow_at(10, 5)
    assert bills.download_due(db, settings, now=first) == 0
    [day] = downloads(db)
    assert day.status == "pending" and "账单生成中" in day.last_error
    assert as_utc(day.next_attempt_at) == first + bills.NOT_READY_RETRY
    assert imports(db) == []

    fake.hold_bills(False)
    assert bills.download_due(db, settings, now=first + timedelta(minutes=10)) == 0  # not due
    assert bill_requests(fake) == 1
    assert bills.download_due(db, settings, now=first + timedelta(minutes=31)) == 1
    [day] = downloads(db)
    assert (day.status, day.attempts, day.last_error) == ("done", 2, "")
    assert len(imports(db)) == 1


def test_a_bill_that_does_not_match_its_hash_is_not_reconciled(
    db: Database, settings: Settings, fake: FakeWeChatPay, today: list[str]
) -> None:
    fake.tamper_next_bill()
    now = tomorrow_at(10, 30)
    assert bills.download_due(db, settings, now=now) == 0
    [day] = downloads(db)
    assert day.status == "pending" and "校验失败" in day.last_error
    assert imports(db) == []
    assert bills.download_due(db, settings, now=now + bills.ERROR_RETRY_FIRST) == 1
    assert len(imports(db)) == 1 and imports(db)[0].finding_count == 0


def test_a_day_without_a_bill_still_checks_our_payments(
    db: Database, settings: Settings, fake: FakeWeChatPay, today: list[str]
) -> None:
    fake.reset()  # WeChat Pay forgot them: NO_STATEMENT_EXIST for the day
    fake.bill_publish_delay = timedelta(0)
    assert bills.download_due(db, settings, now=tomorrow_at(10, 30)) == 1
    [stored] = imports(db)
    assert stored.bill_rows == 0
    assert sorted(f["out_trade_no"] for f in stored.findings) == sorted(today)
    assert {f["kind"] for f in stored.findings} == {"payment_missing_on_bill"}


def test_several_workers_download_it_once(
    db: Database, settings: Settings, fake: FakeWeChatPay, today: list[str]
) -> None:
    now = tomorrow_at(10, 15)
    start = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(bills.download_due(db, settings, now=now))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == [0, 0, 0, 1]
    assert bill_requests(fake) == 1
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(ReconciliationImport)) == 1
        assert session.scalar(select(func.count()).select_from(TradeBillDownload)) == 1


def test_without_wechat_pay_the_job_does_nothing(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("O2O_WECHATPAY_MCHID", raising=False)
    assert bills.download_due(db, settings, now=tomorrow_at(11)) == 0
    assert downloads(db) == []
