"""对账: compare a WeChat Pay v3 trade bill (交易账单) with our payments and refunds.

The bill is parsed by ``o2o.payments.wechatpay_bill.parse_trade_bill`` (backtick-prefixed
fields, summary lines, amounts in yuan → fen). Each bill row is a payment (``商户订单号`` is our
``payment_no``, or an ``order_no`` for a sub-order of a combined partner payment) or a refund
(``商户退款单号`` is our ``refund_no``). Findings:

=============================  ==========================================================
``payment_missing_here``       the bill has a payment we do not have as paid
``payment_missing_on_bill``    we have a WeChat Pay payment paid on a bill day; the bill not
``payment_amount_mismatch``    both have it, with different amounts
``refund_missing_here``        the bill has a refund we do not know WeChat Pay accepted
``refund_missing_on_bill``     we have a WeChat Pay refund accepted on a bill day; the bill not
``refund_amount_mismatch``     both have it, with different amounts
``summary_mismatch``           the bill's own summary does not add up to its rows
=============================  ==========================================================

The bill days are the Beijing dates of its rows (or ``bill_date``). Rows are matched whatever
their date, so a payment at 23:59:59 on our side and 00:00:01 on theirs is not a finding.

A refund is on the bill of the day WeChat Pay *accepted* it (its 交易时间 is 发起退款成功时间, and
the row is not moved or updated when the money lands later), so ours are dated by
``accepted_at`` (the provider's create_time) and match whether they have landed yet or not —
succeeded, still processing, or abnormal (the money left the merchant account either way).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from o2o.errors import ValidationFailed
from o2o.orders.models import Order
from o2o.payments.models import (
    REFUND_ABNORMAL,
    REFUND_PROCESSING,
    REFUND_SUCCEEDED,
    SUCCEEDED,
    Payment,
    Refund,
)
from o2o.payments.wechatpay_bill import TradeBill, parse_trade_bill
from o2o.settlement.models import SOURCE_UPLOAD, ReconciliationImport
from o2o.timeutil import CHINA_TZ, as_utc, utcnow

PROVIDER = "wechatpay"
# Refunds WeChat Pay has accepted (its bill lists them): on their way, arrived, or abnormal.
ACCEPTED_REFUNDS = (REFUND_PROCESSING, REFUND_SUCCEEDED, REFUND_ABNORMAL)
REQUIRED_COLUMNS = ("交易时间", "商户订单号", "交易状态")
NO_REFUND = frozenset({"", "0"})

LABELS = {
    "payment_missing_here": "账单有、本地无的支付",
    "payment_missing_on_bill": "本地有、账单无的支付",
    "payment_amount_mismatch": "支付金额不一致",
    "refund_missing_here": "账单有、本地无的退款",
    "refund_missing_on_bill": "本地有、账单无的退款",
    "refund_amount_mismatch": "退款金额不一致",
    "summary_mismatch": "账单汇总与明细不符",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    label: str
    out_trade_no: str = ""
    refund_no: str = ""
    bill_fen: int | None = None
    our_fen: int | None = None
    detail: str = ""


@dataclass
class Report:
    date_from: str
    date_to: str
    bill_rows: int
    bill_payments_fen: int
    bill_refunds_fen: int
    matched: int
    findings: list[Finding] = field(default_factory=list)
    import_id: int | None = None

    @property
    def ok(self) -> bool:
        return not self.findings


def _accepted(refund: Refund) -> bool:
    """WeChat Pay took this refund (so its bill lists it), whatever became of it since."""
    return refund.status in ACCEPTED_REFUNDS or refund.accepted_at is not None


def _finding(kind: str, **kw: Any) -> Finding:
    return Finding(kind=kind, label=LABELS[kind], **kw)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _parse(text: str) -> TradeBill:
    try:
        bill = parse_trade_bill(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            f"无法解析微信支付交易账单：{exc}", code="bill_invalid", field="bill"
        ) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in bill.header]
    if missing:
        raise ValidationFailed(
            f"交易账单缺少列：{'、'.join(missing)}", code="bill_invalid", field="bill"
        )
    return bill


def _row_date(row: dict[str, Any]) -> date:
    try:
        return datetime.strptime(str(row["交易时间"]), "%Y-%m-%d %H:%M:%S").date()
    except ValueError:
        raise ValidationFailed(
            f"交易时间格式不对：{row['交易时间']!r}", code="bill_invalid", field="bill"
        ) from None


def _window(days: list[date]) -> tuple[datetime, datetime]:
    start = datetime.combine(min(days), datetime.min.time(), CHINA_TZ)
    end = datetime.combine(max(days) + timedelta(days=1), datetime.min.time(), CHINA_TZ)
    return as_utc(start), as_utc(end)


def _summary_findings(bill: TradeBill, payments_fen: int, refunds_fen: int) -> list[Finding]:
    found = []
    s = bill.summary
    checks = [
        ("总交易单数", len(bill.rows)),
        ("应结订单总金额", sum(_int(r.get("应结订单金额")) for r in bill.rows)),
        ("退款总金额", refunds_fen),
    ]
    for name, actual in checks:
        if name in s and s[name] != actual:
            found.append(
                _finding(
                    "summary_mismatch",
                    bill_fen=_int(s[name]) if name != "总交易单数" else None,
                    our_fen=actual if name != "总交易单数" else None,
                    detail=f"{name}：汇总 {s[name]}，明细合计 {actual}",
                )
            )
    return found


def reconcile(session: Session, text: str, *, bill_date: date | None = None) -> Report:
    """Compare the bill with the database (read-only). Raises ValidationFailed on a bad bill."""
    return reconcile_bill(session, _parse(text), bill_date=bill_date)


def empty_bill() -> TradeBill:
    """What a day without a bill (WeChat Pay: NO_STATEMENT_EXIST) is compared as."""
    return TradeBill(header=list(REQUIRED_COLUMNS), rows=[], summary={})


def reconcile_bill(session: Session, bill: TradeBill, *, bill_date: date | None = None) -> Report:
    """``reconcile`` for a parsed bill."""
    payment_rows: dict[str, int] = {}
    refund_rows: dict[str, tuple[str, int]] = {}
    findings: list[Finding] = []
    days: list[date] = []
    for row in bill.rows:
        days.append(_row_date(row))
        refund_no = str(row.get("商户退款单号") or "")
        out_trade_no = str(row.get("商户订单号") or "")
        if refund_no not in NO_REFUND or row.get("交易状态") == "REFUND":
            amount = _int(row.get("退款金额")) or _int(row.get("申请退款金额"))
            refund_rows[refund_no] = (out_trade_no, refund_rows.get(refund_no, ("", 0))[1] + amount)
        else:
            amount = _int(row.get("订单金额")) or _int(row.get("应结订单金额"))
            payment_rows[out_trade_no] = payment_rows.get(out_trade_no, 0) + amount
    if bill_date is not None:
        days = [bill_date]
    if not days:
        raise ValidationFailed(
            "账单没有明细行：请指定账单日期 bill_date", code="bill_date_required", field="bill_date"
        )
    start, end = _window(days)
    bill_payments = sum(payment_rows.values())
    bill_refunds = sum(amount for _, amount in refund_rows.values())
    findings += _summary_findings(bill, bill_payments, bill_refunds)

    # --- payments: the bill's side
    nos = list(payment_rows)
    payments = {
        p.payment_no: p for p in session.scalars(select(Payment).where(Payment.payment_no.in_(nos)))
    }
    orders = {o.order_no: o for o in session.scalars(select(Order).where(Order.order_no.in_(nos)))}
    order_payments = {
        p.id: p
        for p in session.scalars(
            select(Payment).where(Payment.id.in_({o.payment_id for o in orders.values()}))
        )
    }
    matched = 0
    for no, bill_fen in sorted(payment_rows.items()):
        if no in payments:
            payment, ours = payments[no], payments[no].amount_fen
        elif no in orders:
            payment, ours = order_payments[orders[no].payment_id], orders[no].payable_fen
        else:
            findings.append(_finding("payment_missing_here", out_trade_no=no, bill_fen=bill_fen))
            continue
        if payment.status != SUCCEEDED:
            findings.append(
                _finding(
                    "payment_missing_here",
                    out_trade_no=no,
                    bill_fen=bill_fen,
                    our_fen=ours,
                    detail=f"本地支付单 {payment.payment_no} 状态为 {payment.status}",
                )
            )
        elif ours != bill_fen:
            findings.append(
                _finding(
                    "payment_amount_mismatch", out_trade_no=no, bill_fen=bill_fen, our_fen=ours
                )
            )
        else:
            matched += 1

    # --- payments: our side (paid through WeChat Pay on the bill's days)
    ours_paid = list(
        session.scalars(
            select(Payment).where(
                Payment.provider == PROVIDER,
                Payment.status == SUCCEEDED,
                Payment.paid_at >= start,
                Payment.paid_at < end,
            )
        )
    )
    order_nos: dict[int, list[Order]] = {}
    for order in session.scalars(
        select(Order).where(Order.payment_id.in_([p.id for p in ours_paid])).order_by(Order.id)
    ):
        order_nos.setdefault(order.payment_id, []).append(order)
    for payment in sorted(ours_paid, key=lambda p: p.payment_no):
        if payment.payment_no in payment_rows:
            continue
        its_orders = order_nos.get(payment.id, [])
        on_bill = [o for o in its_orders if o.order_no in payment_rows]
        if len(its_orders) > 1 and on_bill:
            # A combined partner payment is billed per sub-order.
            for order in its_orders:
                if order.order_no not in payment_rows:
                    findings.append(
                        _finding(
                            "payment_missing_on_bill",
                            out_trade_no=order.order_no,
                            our_fen=order.payable_fen,
                            detail=f"合单支付 {payment.payment_no} 的子单",
                        )
                    )
            continue
        findings.append(
            _finding(
                "payment_missing_on_bill",
                out_trade_no=payment.payment_no,
                our_fen=payment.amount_fen,
            )
        )

    # --- refunds
    refunds = {
        r.refund_no: r
        for r in session.scalars(select(Refund).where(Refund.refund_no.in_(list(refund_rows))))
    }
    for no, (trade_no, bill_fen) in sorted(refund_rows.items()):
        refund = refunds.get(no)
        if refund is None or not _accepted(refund):
            findings.append(
                _finding(
                    "refund_missing_here",
                    out_trade_no=trade_no,
                    refund_no=no,
                    bill_fen=bill_fen,
                    our_fen=refund.amount_fen if refund else None,
                    detail=f"本地退款单状态为 {refund.status}" if refund else "",
                )
            )
        elif refund.amount_fen != bill_fen:
            findings.append(
                _finding(
                    "refund_amount_mismatch",
                    out_trade_no=trade_no,
                    refund_no=no,
                    bill_fen=bill_fen,
                    our_fen=refund.amount_fen,
                )
            )
        else:
            matched += 1
    accepted_on = func.coalesce(Refund.accepted_at, Refund.succeeded_at)
    for refund in session.scalars(
        select(Refund)
        .where(
            Refund.provider == PROVIDER,
            Refund.status.in_(ACCEPTED_REFUNDS),
            accepted_on >= start,
            accepted_on < end,
        )
        .order_by(Refund.refund_no)
    ):
        if refund.refund_no not in refund_rows:
            findings.append(
                _finding(
                    "refund_missing_on_bill", refund_no=refund.refund_no, our_fen=refund.amount_fen
                )
            )
    return Report(
        date_from=min(days).isoformat(),
        date_to=max(days).isoformat(),
        bill_rows=len(bill.rows),
        bill_payments_fen=bill_payments,
        bill_refunds_fen=bill_refunds,
        matched=matched,
        findings=findings,
    )


def store(
    session: Session,
    report: Report,
    text: str,
    *,
    actor_id: int | None,
    source: str = SOURCE_UPLOAD,
) -> Report:
    """Keep the import and its findings for audit (``source``: upload, cli or download)."""
    record = ReconciliationImport(
        provider=PROVIDER,
        date_from=report.date_from,
        date_to=report.date_to,
        bill_rows=report.bill_rows,
        bill_payments_fen=report.bill_payments_fen,
        bill_refunds_fen=report.bill_refunds_fen,
        matched=report.matched,
        finding_count=len(report.findings),
        findings=[asdict(f) for f in report.findings],
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        imported_by=actor_id,
        source=source,
        created_at=utcnow(),
    )
    session.add(record)
    session.flush()
    report.import_id = record.id
    return report


def format_table(report: Report) -> str:
    """A plain-text table for the CLI (Chinese labels, amounts in yuan)."""

    def yuan(fen: int | None) -> str:
        if fen is None:
            return "-"
        sign = "-" if fen < 0 else ""
        return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"

    lines = [
        f"对账 Reconciliation  {report.date_from} ~ {report.date_to}",
        f"账单行数 rows: {report.bill_rows}   支付 payments: ¥{yuan(report.bill_payments_fen)}   "
        f"退款 refunds: ¥{yuan(report.bill_refunds_fen)}   相符 matched: {report.matched}",
    ]
    if report.ok:
        lines.append("全部相符 — no mismatches")
        return "\n".join(lines)
    header = (
        "类型 kind",
        "商户订单号 out_trade_no",
        "退款单号 refund_no",
        "账单 bill",
        "本地 ours",
        "说明",
    )
    rows = [
        (f.label, f.out_trade_no, f.refund_no, yuan(f.bill_fen), yuan(f.our_fen), f.detail)
        for f in report.findings
    ]
    widths = [max(_width(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        lines.append("  ".join(_pad(str(v), w) for v, w in zip(r, widths, strict=True)).rstrip())
    lines.append(f"不符 mismatches: {len(report.findings)}")
    return "\n".join(lines)


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
