"""结算 and 对账 pages (console_settlements, admin_settlements) on SQLite and PostgreSQL: a
merchant sees its own statements to the fen (never another's; not its clerk), the operator marks
one paid once (the ledger payout is posted; a second time is a clear message), bad input is a
Chinese error next to the field that changes nothing, and a hand-edited WeChat Pay bill shows
its mismatches. Also the demo's statements against the ledger."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.config import Settings
from o2o.db import Database
from o2o.ledger import service as ledger
from o2o.ledger.models import LedgerTransaction
from o2o.settlement import service
from o2o.settlement.models import (
    ProfitSharingOrder,
    ReconciliationImport,
    SettlementStatement,
)
from o2o.timeutil import CHINA_TZ, utcnow
from tests.checkout_support import make_deal, make_goods
from tests.support import World
from tests.test_settlement_wechatpay import (  # noqa: F401  (fixtures: partner mode, the fake)
    SUB_A,
    buy_and_pay,
    earn_order,
    fake,
    fake_server,
    partner,
    the_statement,
)
from tests.voucher_support import a_deal, paid_order, redeem
from tests.web.support import TOKEN, PageClient, field_error


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


@dataclass
class Settled:
    a_no: str  # merchant A's statement: two redeemed vouchers
    b_no: str  # merchant B's
    orders: list[str]  # A's order numbers
    payments: list[str]  # A's payment numbers


def settle_now(db: Database, settings: Settings) -> int:
    """The worker's job as if the day had ended."""
    return service.generate_statements(db, settings, now=utcnow() + timedelta(days=2))


@pytest.fixture
def settled(world: World, api: Any, db: Database, settings: Settings) -> Settled:
    """A: 招牌双人餐 ¥50.00 and 单人午餐 ¥33.33 redeemed (6% → ¥3.00 + ¥2.00, 199.98 fen rounds
    to 200); B: one ¥20.00 deal redeemed. Then statements."""
    orders, payments = [], []
    for title, price in (("招牌双人餐", 5000), ("单人午餐", 3333)):
        bought = paid_order(
            db, world.consumer_id, a_deal(world, price_fen=price, title=title).listing_id
        )
        assert redeem(api, world, bought.codes[0]).status_code == 200
        orders.append(bought.order_no)
        payments.append(bought.payment_no)
    deal_b = make_deal(db, world.b.id, world.category_id, world.b.store_ids, price_fen=2000)
    bought_b = paid_order(db, world.consumer_id, deal_b.listing_id)
    r = redeem(
        api,
        world,
        bought_b.codes[0],
        as_="other_clerk",
        merchant_id=world.b.id,
        store_id=world.b.store_ids[0],
    )
    assert r.status_code == 200, r.text
    assert settle_now(db, settings) == 2
    with db.transaction(readonly=True) as session:
        [a] = service.list_statements(session, merchant_id=world.a.id)
        [b] = service.list_statements(session, merchant_id=world.b.id)
        return Settled(a.statement_no, b.statement_no, orders, payments)


def statement(db: Database, no: str) -> SettlementStatement:
    with db.transaction(readonly=True) as session:
        return service.get_statement(session, no)


def payouts(db: Database, no: str) -> list[LedgerTransaction]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(LedgerTransaction).where(
                    LedgerTransaction.kind == ledger.PAYOUT, LedgerTransaction.payout_no == no
                )
            )
        )


def row(html: str, no: str) -> str:
    match = re.search(rf'<tr data-statement="{no}">.*?</tr>', html, flags=re.S)
    assert match, f"no row for {no}"
    return match.group(0)


def cell(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</', html, flags=re.S)
    assert match, testid
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


# --- merchant console ----------------------------------------------------------------------------


def test_merchant_sees_its_statements_to_the_fen(
    pages: PageClient, world: World, settled: Settled
) -> None:
    base = f"/console/m/{world.a.id}/settlements"
    for user in (world.a.owner_id, world.a.manager_id):
        r = pages.sign_in(user).get(base)
        assert r.status_code == 200, r.text
        line = row(r.text, settled.a_no)
        assert cell(line, "gross") == "¥83.33"
        assert cell(line, "commission") == "¥5.00"
        assert cell(line, "refunds") == "¥0.00"
        assert cell(line, "net") == "¥78.33"
        assert cell(line, "status") == "待打款"
        assert settled.b_no not in r.text
        # The ledger balance: owed ¥78.33, nothing unsettled, nothing paid yet.
        assert cell(r.text, "payable-balance") == "¥78.33"
        assert cell(r.text, "unsettled") == "¥0.00"
        assert cell(r.text, "paid-out") == "¥0.00"
        assert cell(r.text, "commission-total") == "¥5.00"
        assert f'href="{base}"' in r.text  # the 结算 tab

    detail = pages.get(f"{base}/{settled.a_no}")
    assert detail.status_code == 200
    lines = {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr data-order="(\d+)">.*?</tr>', detail.text, flags=re.S)
    }
    assert set(lines) == set(settled.orders)
    first, second = (lines[no] for no in settled.orders)
    assert "招牌双人餐" in first and "¥50.00" in first and "¥3.00" in first and "¥47.00" in first
    assert "单人午餐" in second and "¥33.33" in second and "¥2.00" in second
    assert "¥31.33" in second
    assert cell(detail.text, "statement-status") == "待打款"
    # Filters typed by hand are ignored, never a 500.
    for params in ({"status": "paid"}, {"status": "x" * 100, "before": "9" * 40}, {"before": "²"}):
        assert pages.get(base, params=params).status_code == 200
    assert settled.a_no not in pages.get(base, params={"status": "paid"}).text


def test_other_merchants_and_clerks_do_not_see_statements(
    pages: PageClient, world: World, settled: Settled
) -> None:
    base = f"/console/m/{world.a.id}/settlements"
    # A clerk: refused (as the API), and no 结算 tab.
    pages.sign_in(world.a.clerk_id)
    for url in (base, f"{base}/{settled.a_no}"):
        r = pages.get(url)
        assert r.status_code == 403 and "无权" in r.text
    assert base not in pages.get(f"/console/m/{world.a.id}").text
    # Another merchant's manager: not staff of A; A's statement under B's own console: 404.
    pages.sign_in(world.b.manager_id)
    assert pages.get(base).status_code in (403, 404)
    r = pages.get(f"/console/m/{world.b.id}/settlements/{settled.a_no}")
    assert r.status_code == 404
    assert settled.a_no not in pages.get(f"/console/m/{world.b.id}/settlements").text
    for bad in ("x" * 41, "ST%20x", "ST.1"):
        assert pages.get(f"{base}/{bad}").status_code in (403, 404, 422)
    # Anonymous: to the login page.
    r = pages.sign_in(None).get(base)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


# --- operator admin ------------------------------------------------------------------------------


def test_operator_lists_and_filters_statements(
    pages: PageClient, world: World, settled: Settled
) -> None:
    client = pages.sign_in(world.operator_id)
    r = client.get("/admin/settlements")
    assert r.status_code == 200
    assert settled.a_no in r.text and settled.b_no in r.text
    assert "甲火锅" in row(r.text, settled.a_no) and "乙书店" in row(r.text, settled.b_no)
    only_a = client.get("/admin/settlements", params={"merchant_id": world.a.id}).text
    assert settled.a_no in only_a and settled.b_no not in only_a
    assert "没有符合条件的结算单" in client.get("/admin/settlements?status=paid").text
    for params in (
        {"merchant_id": "abc"},
        {"merchant_id": "9" * 30},
        {"merchant_id": "²", "before": "³"},
        {"status": "<b>"},
    ):
        assert client.get("/admin/settlements", params=params).status_code == 200
    for user in (world.a.owner_id, world.consumer_id):
        assert pages.sign_in(user).get("/admin/settlements").status_code == 403
        assert pages.get(f"/admin/settlements/{settled.a_no}").status_code == 403
    r = pages.sign_in(world.operator_id).get("/admin/settlements/ST19990101-1-1")
    assert r.status_code == 404


def test_operator_marks_a_statement_paid_once(
    pages: PageClient, world: World, db: Database, settled: Settled
) -> None:
    no, url = settled.a_no, f"/admin/settlements/{settled.a_no}"
    client = pages.sign_in(world.operator_id)
    page = client.get(url).text
    assert "标记已打款" in page and "¥78.33" in page
    # In the sandbox there is no WeChat Pay partner mode: no 分账 button.
    assert "发起分账" not in page

    # No CSRF token / not an operator: refused, nothing paid.
    assert (
        client.form_post(f"{url}/mark-paid", {"bank_reference": "X1"}, token=False).status_code
        == 403
    )
    owner = pages.sign_in(world.a.owner_id)
    assert owner.form_post(f"{url}/mark-paid", {"bank_reference": "X1"}).status_code == 403
    client = pages.sign_in(world.operator_id)
    # Missing or blank bank reference: a Chinese message next to the field.
    for blank in ("", "   "):
        r = client.form_post(f"{url}/mark-paid", {"bank_reference": blank})
        assert r.status_code == 422
        assert field_error(r.text, "bank_reference") == "请填写银行流水号（1–100 字）"
    r = client.form_post(f"{url}/mark-paid", {"bank_reference": "x" * 101})
    assert r.status_code == 422 and field_error(r.text, "bank_reference")
    assert statement(db, no).status == "ready" and payouts(db, no) == []

    r = client.form_post(f"{url}/mark-paid", {"bank_reference": " CMB20260310001 "})
    assert r.status_code == 303 and r.headers["location"] == url
    shown = client.get(url).text
    assert "已标记已打款" in shown  # the flash
    assert cell(shown, "statement-status") == "已打款"
    assert cell(shown, "bank-reference") == "CMB20260310001"
    paid = statement(db, no)
    assert (paid.status, paid.bank_reference, paid.payout_via) == ("paid", "CMB20260310001", "bank")
    [payout] = payouts(db, no)
    assert payout.merchant_id == world.a.id
    with db.transaction(readonly=True) as session:
        balance = ledger.merchant_balance(session, world.a.id)
    assert (balance.payable_fen, balance.paid_out_fen) == (0, 7833)

    # Twice: a clear message on the page, no 500, no second payout.
    r = client.form_post(f"{url}/mark-paid", {"bank_reference": "CMB20260310002"})
    assert r.status_code == 409, r.text
    assert "标记已打款（流水号 CMB20260310001），无需重复操作" in r.text
    assert len(payouts(db, no)) == 1 and statement(db, no).bank_reference == "CMB20260310001"

    # The merchant sees it paid, with the date and the bank reference.
    console = pages.sign_in(world.a.owner_id).get(f"/console/m/{world.a.id}/settlements").text
    line = row(console, no)
    assert cell(line, "status") == "已打款" and "CMB20260310001" in cell(line, "payout")
    assert cell(console, "paid-out") == "¥78.33" and cell(console, "payable-balance") == "¥0.00"


def test_profit_sharing_outside_partner_mode_is_a_message(
    pages: PageClient, world: World, db: Database, settled: Settled
) -> None:
    url = f"/admin/settlements/{settled.a_no}"
    client = pages.sign_in(world.operator_id)
    assert client.form_post(f"{url}/profit-sharing", token=False).status_code == 403
    r = client.form_post(f"{url}/profit-sharing")
    assert r.status_code == 303 and r.headers["location"] == url
    assert "服务商（partner）模式" in client.get(url).text
    assert statement(db, settled.a_no).status == "ready"
    r = client.form_post("/admin/settlements/ST19990101-1-1/profit-sharing")
    assert r.status_code == 404


@pytest.mark.usefixtures("partner")
def test_operator_settles_through_wechat_pay_profit_sharing(
    pages: PageClient,
    world: World,
    api: Any,
    db: Database,
    settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    """Partner mode (the local fake WeChat Pay): 发起分账, 分账中 until WeChat Pay finishes, then
    刷新分账结果 settles it — paid through profit sharing, no bank form any more."""
    wechat = request.getfixturevalue("fake")
    goods = make_goods(db, world.a.id, world.category_id, price_fen=10000)
    payment_no, orders = buy_and_pay(api, db, wechat, world, [goods])
    earn_order(db, payment_no, orders[world.a.id], complete=True)
    no = the_statement(db, settings, world.a.id).statement_no
    url = f"/admin/settlements/{no}"
    client = pages.sign_in(world.operator_id)
    assert "发起分账" in client.get(url).text

    r = client.form_post(f"{url}/profit-sharing")
    assert r.status_code == 303 and r.headers["location"] == url
    html = client.get(url).text
    assert "已发起分账" in html and cell(html, "statement-status") == "分账中"
    assert "处理中" in html and "刷新分账结果" in html and "¥6.00" in html
    with db.transaction(readonly=True) as session:
        [order_share] = session.scalars(select(ProfitSharingOrder))
        out_order_no = order_share.out_order_no

    wechat.finish_profit_sharing(out_order_no, sub_mchid=SUB_A)
    assert client.form_post(f"{url}/profit-sharing").status_code == 303
    html = client.get(url).text
    assert "分账已完成" in html and cell(html, "statement-status") == "已打款"
    assert "微信支付分账" in html and "标记已打款" not in html and "刷新分账结果" not in html
    assert [p.merchant_id for p in payouts(db, no)] == [world.a.id]
    # Once: another click is a message, not a second payout.
    assert client.form_post(f"{url}/profit-sharing").status_code == 303
    assert "已打款" in client.get(url).text and len(payouts(db, no)) == 1


# --- reconciliation ------------------------------------------------------------------------------

HEADER = "交易时间,公众账号ID,商户号,微信订单号,商户订单号,交易状态,应结订单金额,订单金额,商户退款单号,退款金额"


def bill(rows: list[tuple[str, int]]) -> str:
    """A trade bill as WeChat Pay serves it (backticks, yuan, summary lines), by hand."""
    at = datetime.now(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")

    def yuan(fen: int) -> str:
        return f"{fen // 100}.{fen % 100:02d}"

    lines = [HEADER]
    for i, (no, fen) in enumerate(rows):
        fields = [
            at,
            "wxdemo",
            "1900000109",
            f"42000{i:05d}",
            no,
            "SUCCESS",
            yuan(fen),
            yuan(fen),
            "0",
            "0.00",
        ]
        lines.append(",".join("`" + f for f in fields))
    total = sum(fen for _, fen in rows)
    lines += ["总交易单数,应结订单总金额,退款总金额", f"`{len(rows)},`{yuan(total)},`0.00"]
    return "\r\n".join(lines) + "\r\n"


def imports(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(ReconciliationImport)) or 0


def test_a_hand_edited_bill_shows_its_mismatches(
    pages: PageClient, world: World, db: Database, settled: Settled
) -> None:
    client = pages.sign_in(world.operator_id)
    assert "还没有导入过账单" in client.get("/admin/reconciliation").text
    # Our ¥50.00 payment billed as ¥50.01; the ¥33.33 one matches; a payment we never took.
    text = bill([(settled.payments[0], 5001), (settled.payments[1], 3333), ("P404NOTOURS", 1200)])
    assert client.form_post("/admin/reconciliation", {"bill": text}, token=False).status_code == 403
    assert imports(db) == 0
    r = client.form_post("/admin/reconciliation", {"bill": text})
    assert r.status_code == 303, r.text
    shown = client.get(r.headers["location"])
    assert shown.status_code == 200
    html = shown.text
    assert cell(html, "finding-count") == "2 项"
    mismatch = re.search(r'<tr data-kind="payment_amount_mismatch">.*?</tr>', html, re.S)
    assert mismatch and settled.payments[0] in mismatch.group(0)
    assert "¥50.01" in mismatch.group(0) and "¥50.00" in mismatch.group(0)
    missing = re.search(r'<tr data-kind="payment_missing_here">.*?</tr>', html, re.S)
    assert missing and "P404NOTOURS" in missing.group(0) and "¥12.00" in missing.group(0)
    assert "金额不符（1）" in html and "本地缺失（1）" in html
    assert settled.payments[1] not in html  # matched: not a finding
    assert imports(db) == 1
    # The past imports, linked.
    listing = client.get("/admin/reconciliation").text
    assert r.headers["location"] in listing and "2 项" in listing

    # The same bill as a file upload.
    r = client.post(
        "/admin/reconciliation",
        data={"csrf_token": TOKEN},
        files={"bill_file": ("wechat-bill.csv", ("\ufeff" + text).encode(), "text/csv")},
    )
    assert r.status_code == 303, r.text
    assert cell(client.get(r.headers["location"]).text, "finding-count") == "2 项"
    # A bill that agrees.
    r = client.form_post("/admin/reconciliation", {"bill": bill([(settled.payments[1], 3333)])})
    assert r.status_code == 303
    assert "全部相符" in client.get(r.headers["location"]).text
    assert imports(db) == 3
    assert client.get("/admin/reconciliation/999999").status_code == 404
    assert pages.sign_in(world.a.owner_id).get("/admin/reconciliation").status_code == 403


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "不是 UTF-8 编码的 CSV"),
        (b"hello,world\nnot,a bill\n", "无法解析微信支付交易账单"),
        (b"", None),
    ],
)
def test_garbage_uploads_are_chinese_errors(
    pages: PageClient, world: World, db: Database, upload: bytes, message: str | None
) -> None:
    client = pages.sign_in(world.operator_id)
    r = client.post(
        "/admin/reconciliation",
        data={"csrf_token": TOKEN},
        files={"bill_file": ("bill.png", upload, "image/png")},
    )
    assert r.status_code == 422, r.text
    assert "text/html" in r.headers["content-type"]
    error = field_error(r.text, "bill") or ""
    assert error, r.text
    if message:
        assert message in error
    assert imports(db) == 0


def test_bad_pasted_bills_are_field_errors(pages: PageClient, world: World, db: Database) -> None:
    client = pages.sign_in(world.operator_id)
    r = client.form_post("/admin/reconciliation", {"bill": "   "})
    assert r.status_code == 422
    assert field_error(r.text, "bill") == "请粘贴账单内容或选择账单文件"
    r = client.form_post("/admin/reconciliation", {"bill": "交易时间,商户订单号\n`x,`y"})
    assert r.status_code == 422 and "无法解析微信支付交易账单" in (
        field_error(r.text, "bill") or ""
    )
    assert "x,`y</textarea>" in r.text  # what was pasted is kept
    # No rows and no date: the date is asked for, next to its field.
    empty = HEADER + "\r\n总交易单数,应结订单总金额,退款总金额\r\n`0,`0.00,`0.00\r\n"
    r = client.form_post("/admin/reconciliation", {"bill": empty})
    assert r.status_code == 422 and field_error(r.text, "bill_date")
    r = client.form_post("/admin/reconciliation", {"bill": empty, "bill_date": "2026-13-45"})
    assert r.status_code == 422 and field_error(r.text, "bill_date")
    assert imports(db) == 0
    r = client.form_post("/admin/reconciliation", {"bill": empty, "bill_date": "2026-03-10"})
    assert r.status_code == 303


# --- demo data -----------------------------------------------------------------------------------


def test_demo_statements_add_up_to_the_ledger(demo_db: Database) -> None:
    from o2o import demo

    demo.load(demo_db)
    with demo_db.transaction(readonly=True) as session:
        rows = list(session.scalars(select(SettlementStatement)))
        assert rows, "the demo made no statements"
        assert {"paid", "ready"} <= {s.status for s in rows} <= {"paid", "ready", "carried"}
        assert all(s.bank_reference and s.paid_at for s in rows if s.status == "paid")
        for merchant_id in {s.merchant_id for s in rows}:
            mine = [s for s in rows if s.merchant_id == merchant_id]
            balance = ledger.merchant_balance(session, merchant_id)
            unsettled = service.unsettled_payable(session, merchant_id)
            # Σ net (+ what no statement covers yet: today's postings) == everything the ledger
            # credited the payable outside payouts; Σ paid == what was paid out.
            assert sum(s.net_fen for s in mine) + unsettled == (
                balance.payable_fen + balance.paid_out_fen
            )
            assert sum(s.payable_fen for s in mine if s.status == "paid") == balance.paid_out_fen
            assert any(s.status == "ready" for s in mine)
        assert ledger.unbalanced_transactions(session) == []
        before = sorted((s.statement_no, s.status, s.net_fen) for s in rows)
        txns = session.scalar(select(func.count()).select_from(LedgerTransaction))
    demo.load(demo_db)  # twice: nothing changes
    with demo_db.transaction(readonly=True) as session:
        after = sorted(
            (s.statement_no, s.status, s.net_fen)
            for s in session.scalars(select(SettlementStatement))
        )
        assert after == before
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == txns
