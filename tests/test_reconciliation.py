"""对账: a WeChat Pay trade bill from the local fake (and hand-edited copies of it) against our
payments and refunds — through the operator API and ``o2o reconcile``. Both databases."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from o2o.cli import app as cli
from o2o.config import get_settings
from o2o.db import Database
from o2o.payments.models import Refund
from o2o.settlement.models import ReconciliationImport
from o2o.timeutil import CHINA_TZ
from tests.checkout_support import ADDRESS, goods_item, make_goods, place
from tests.fakes.wechatpay_server import FakeWeChatPay
from tests.support import bind_wechat

NOTIFY = "/api/v1/payments/notify/wechatpay"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
PROBLEM = "application/problem+json"
URL = "/api/v1/admin/reconciliation"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch) -> FakeWeChatPay:
    fake_server.reset()
    for name, value in fake_server.provider_env(notify_url="http://testserver" + NOTIFY).items():
        monkeypatch.setenv(name, value)
    return fake_server


def pay(api: Any, fake: FakeWeChatPay, world: Any, goods: Any) -> tuple[str, str]:
    token = world.tokens["consumer"]
    made = place(api, token, [goods_item(goods)], address=ADDRESS)
    assert made.status_code == 201, made.text
    payment_no = made.json()["payment"]["payment_no"]
    bind_wechat(world.db, world.consumer_id, os.environ["O2O_WECHATPAY_APPID"], OPENID)
    r = api.post(
        f"/api/v1/payments/{payment_no}/pay",
        json={"provider": "wechatpay", "method": "jsapi"},
        as_=token,
    )
    assert r.status_code == 200, r.text
    note = fake.pay(payment_no, deliver=True, client=api, notify_url=NOTIFY)
    assert note.response is not None and note.response.status_code in (200, 204)
    return payment_no, made.json()["orders"][0]["order_no"]


@pytest.fixture
def day(api: Any, db: Database, world: Any, fake: FakeWeChatPay) -> dict[str, Any]:
    """Two WeChat Pay payments today, the second refunded in full; the fake's bill of today."""
    first = pay(api, fake, world, make_goods(db, world.a.id, world.category_id, price_fen=2590))
    second = pay(api, fake, world, make_goods(db, world.a.id, world.category_id, price_fen=5000))
    refund = api.post(
        f"/api/v1/orders/{second[1]}/refunds",
        json={"reason": "不想要了"},
        as_=world.tokens["consumer"],
    )
    assert refund.status_code == 201, refund.text
    refund_no = refund.json()["refund_no"]
    done = fake.complete_refund(refund_no, deliver=True, client=api)
    assert done.response is not None and done.response.status_code in (200, 204)
    mchid = fake.provider_env()["O2O_WECHATPAY_MCHID"]
    bill = fake.trade_bill_text(mchid, datetime.now(CHINA_TZ).date())
    return {"first": first[0], "second": second[0], "refund_no": refund_no, "bill": bill}


def edit(bill: str, change: Callable[[list[str], list[list[str]]], list[list[str]]]) -> str:
    """Apply ``change(header, rows)`` to the detail rows (values keep their backticks)."""
    lines = bill.strip("\r\n").split("\r\n")
    header = lines[0].split(",")
    end = next(i for i, line in enumerate(lines) if line.startswith("总交易单数"))
    rows = [line.split(",") for line in lines[1:end]]
    rows = change(header, rows)
    return "\r\n".join([lines[0], *(",".join(r) for r in rows), *lines[end:]]) + "\r\n"


def row_of(header: list[str], rows: list[list[str]], column: str, value: str) -> list[str]:
    i = header.index(column)
    return next(r for r in rows if r[i] == "`" + value)


def set_value(header: list[str], row: list[str], column: str, value: str) -> None:
    row[header.index(column)] = "`" + value


def post(api: Any, world: Any, bill: str, **extra: Any) -> Any:
    return api.post(URL, json={"bill": bill, **extra}, as_=world.tokens["operator"])


def kinds(body: dict[str, Any]) -> list[str]:
    return sorted(f["kind"] for f in body["findings"])


def imports(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(ReconciliationImport)) or 0


def test_a_matching_bill_reconciles(
    api: Any, db: Database, world: Any, day: dict[str, Any]
) -> None:
    r = post(api, world, day["bill"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and body["findings"] == []
    assert (body["bill_rows"], body["matched"]) == (3, 3)
    assert (body["bill_payments_fen"], body["bill_refunds_fen"]) == (7590, 5000)
    assert body["date_from"] == datetime.now(CHINA_TZ).date().isoformat()
    with db.transaction(readonly=True) as session:
        stored = session.get(ReconciliationImport, body["import_id"])
        assert stored is not None and (stored.finding_count, stored.matched) == (0, 3)


def test_a_row_missing_from_the_bill(
    api: Any, db: Database, world: Any, day: dict[str, Any]
) -> None:
    def drop(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        gone = row_of(header, rows, "商户订单号", day["first"])
        return [r for r in rows if r is not gone]

    body = post(api, world, edit(day["bill"], drop)).json()
    assert kinds(body) == ["payment_missing_on_bill", "summary_mismatch", "summary_mismatch"]
    [missing] = [f for f in body["findings"] if f["kind"] == "payment_missing_on_bill"]
    assert (missing["out_trade_no"], missing["our_fen"], missing["bill_fen"]) == (
        day["first"],
        2590,
        None,
    )
    assert body["ok"] is False and body["matched"] == 2
    with db.transaction(readonly=True) as session:
        stored = session.get(ReconciliationImport, body["import_id"])
        assert stored is not None and stored.finding_count == 3
        assert {f["kind"] for f in stored.findings} == {
            "payment_missing_on_bill",
            "summary_mismatch",
        }


def test_an_amount_off_by_one_fen(api: Any, world: Any, day: dict[str, Any]) -> None:
    def off(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        no, state = header.index("商户订单号"), header.index("交易状态")
        paid = next(r for r in rows if r[no] == "`" + day["second"] and r[state] == "`SUCCESS")
        set_value(header, paid, "订单金额", "49.99")
        return rows

    body = post(api, world, edit(day["bill"], off)).json()
    assert kinds(body) == ["payment_amount_mismatch"]
    [f] = body["findings"]
    assert (f["out_trade_no"], f["bill_fen"], f["our_fen"]) == (day["second"], 4999, 5000)


def test_an_extra_row_and_a_refund_amount_off(api: Any, world: Any, day: dict[str, Any]) -> None:
    def extra(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        copy = list(row_of(header, rows, "商户订单号", day["first"]))
        set_value(header, copy, "商户订单号", "PUNKNOWN0001")
        refund = row_of(header, rows, "商户退款单号", day["refund_no"])
        set_value(header, refund, "退款金额", "49.99")
        return [*rows, copy]

    body = post(api, world, edit(day["bill"], extra)).json()
    found = {(f["kind"], f["out_trade_no"] or f["refund_no"]) for f in body["findings"]}
    assert ("payment_missing_here", "PUNKNOWN0001") in found
    assert ("refund_amount_mismatch", day["second"]) in found
    [refund] = [f for f in body["findings"] if f["kind"] == "refund_amount_mismatch"]
    assert (refund["refund_no"], refund["bill_fen"], refund["our_fen"]) == (
        day["refund_no"],
        4999,
        5000,
    )
    # The bill's own summary no longer adds up (count, settled total, refunds).
    assert kinds(body).count("summary_mismatch") == 3


def test_a_refund_missing_on_either_side(api: Any, world: Any, day: dict[str, Any]) -> None:
    def swap(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        set_value(
            header, row_of(header, rows, "商户退款单号", day["refund_no"]), "商户退款单号", "RNOPE"
        )
        return rows

    body = post(api, world, edit(day["bill"], swap)).json()
    assert kinds(body) == ["refund_missing_here", "refund_missing_on_bill"]


@pytest.mark.parametrize(
    ("bill", "extra", "code"),
    [
        ("not a bill", {}, "bill_invalid"),
        (
            "交易时间,商户订单号,交易状态\r\n`2025-03-10 10:00:00,`P1,`SUCCESS\r\n",
            {},
            "bill_invalid",
        ),
        (
            "交易时间,交易状态\r\n总交易单数,应结订单总金额\r\n`0,`0.00\r\n",
            {},
            "bill_invalid",
        ),
        (
            "交易时间,商户订单号,交易状态,订单金额\r\n"
            "`2025-03-10 10:00:00,`P1,`SUCCESS,`12.345\r\n"
            "总交易单数,应结订单总金额\r\n`1,`12.34\r\n",
            {},
            "bill_invalid",
        ),
        (
            "交易时间,商户订单号,交易状态,订单金额\r\n"
            "`yesterday,`P1,`SUCCESS,`12.34\r\n"
            "总交易单数,应结订单总金额\r\n`1,`12.34\r\n",
            {},
            "bill_invalid",
        ),
        (
            "交易时间,商户订单号,交易状态\r\n总交易单数,应结订单总金额\r\n`0,`0.00\r\n",
            {},
            "bill_date_required",
        ),
        ("x", {"bill_date": "2025-13-01"}, "validation_error"),
        ("", {}, "validation_error"),
        ("a\x00b", {}, "validation_error"),
    ],
)
def test_bad_bills_are_a_422_and_store_nothing(
    api: Any, db: Database, world: Any, bill: str, extra: dict[str, Any], code: str
) -> None:
    r = post(api, world, bill, **extra)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == code
    assert imports(db) == 0


def test_an_empty_bill_for_a_day_finds_our_payments(
    api: Any, world: Any, day: dict[str, Any]
) -> None:
    empty = (
        "交易时间,商户订单号,交易状态\r\n总交易单数,应结订单总金额,退款总金额\r\n`0,`0.00,`0.00\r\n"
    )
    today = datetime.now(CHINA_TZ).date().isoformat()
    body = post(api, world, empty, bill_date=today).json()
    assert kinds(body) == [
        "payment_missing_on_bill",
        "payment_missing_on_bill",
        "refund_missing_on_bill",
    ]


def test_cli_reconcile(db_url: str, tmp_path: Path, day: dict[str, Any]) -> None:
    runner = CliRunner()

    def run(path: Path) -> Any:
        get_settings.cache_clear()
        try:
            return runner.invoke(cli, ["reconcile", str(path)], env={"O2O_DATABASE_URL": db_url})
        finally:
            get_settings.cache_clear()

    clean = tmp_path / "clean.csv"
    clean.write_bytes(("\ufeff" + day["bill"]).encode("utf-8"))
    result = run(clean)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "全部相符" in result.output

    def off(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        set_value(header, row_of(header, rows, "商户订单号", day["first"]), "订单金额", "25.91")
        return rows

    edited = tmp_path / "edited.csv"
    edited.write_text(edit(day["bill"], off), encoding="utf-8")
    result = run(edited)
    assert result.exit_code == 1, result.output
    assert "支付金额不一致" in result.output and day["first"] in result.output
    assert "25.91" in result.output and "不符 mismatches: 1" in result.output

    broken = tmp_path / "broken.csv"
    broken.write_text("nothing here", encoding="utf-8")
    assert run(broken).exit_code == 2
    assert run(tmp_path / "missing.csv").exit_code == 2


def test_a_refund_is_on_the_bill_of_the_day_it_was_accepted_not_the_day_it_landed(
    api: Any, db: Database, world: Any, fake: FakeWeChatPay
) -> None:
    """WeChat Pay lists a refund once, on the day it accepted it (交易时间 = 发起退款成功时间),
    and never moves the row when the money lands later: a refund landing the next day is on
    today's bill only, and must not be reported missing on either."""
    _payment_no, order_no = pay(api, fake, world, make_goods(db, world.a.id, world.category_id))
    r = api.post(
        f"/api/v1/orders/{order_no}/refunds",
        json={"reason": "不想要了"},
        as_=world.tokens["consumer"],
    )
    assert r.status_code == 201, r.text
    refund_no = r.json()["refund_no"]
    mchid = fake.provider_env()["O2O_WECHATPAY_MCHID"]
    today = datetime.now(CHINA_TZ).date()
    tomorrow = today + timedelta(days=1)
    with db.transaction(readonly=True) as session:
        ours = session.scalar(select(Refund).where(Refund.refund_no == refund_no))
        assert ours is not None and ours.status == "processing"
        assert ours.accepted_at is not None  # WeChat Pay's create_time
        assert ours.accepted_at.astimezone(CHINA_TZ).date() == today

    # Reconciled while it is still on its way: WeChat Pay took it, so it matches.
    bill_today = fake.trade_bill_text(mchid, today)
    header = bill_today.split("\r\n")[0].split(",")
    rows = [line.split(",") for line in bill_today.split("\r\n")[1:3]]
    refund_row = next(row for row in rows if row[header.index("商户退款单号")] == "`" + refund_no)
    assert refund_row[header.index("退款状态")] == "`PROCESSING"
    body = post(api, world, bill_today).json()
    assert body["findings"] == [] and body["matched"] == 2

    # It lands tomorrow (WeChat Pay and we both say so).
    fake.complete_refund(refund_no, deliver=True, client=api)
    landed = datetime.combine(tomorrow, datetime.min.time(), CHINA_TZ) + timedelta(hours=9)
    next(iter(fake.refunds.values())).success_time = landed
    with db.transaction() as session:
        ours = session.scalar(select(Refund).where(Refund.refund_no == refund_no))
        assert ours is not None and ours.status == "succeeded"
        ours.succeeded_at = landed
    # Today's bill still lists it (as it was that day); tomorrow's has no row for it.
    assert refund_no in fake.trade_bill_text(mchid, today)
    assert refund_no not in fake.trade_bill_text(mchid, tomorrow)
    assert post(api, world, fake.trade_bill_text(mchid, today)).json()["findings"] == []
    empty = (
        "交易时间,商户订单号,交易状态\r\n总交易单数,应结订单总金额,退款总金额\r\n`0,`0.00,`0.00\r\n"
    )
    body = post(api, world, empty, bill_date=tomorrow.isoformat()).json()
    assert body["findings"] == [], body["findings"]
