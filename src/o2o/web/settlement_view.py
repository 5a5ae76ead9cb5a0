"""What the settlement pages (merchant console and operator admin) show of a statement: the
period in words, its lines with the listing they came from, its 分账 orders and the payout —
read from ``o2o.settlement`` and ``o2o.ledger`` the way the API reads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.ledger import service as ledger
from o2o.orders.models import OrderLine
from o2o.settlement import service
from o2o.settlement.models import (
    CARRIED,
    PAID,
    READY,
    SHARE_FAILED,
    SHARE_FINISHED,
    SHARE_PENDING,
    SHARE_PROCESSING,
    SHARE_SKIPPED,
    SHARING,
    SHARING_FAILED,
    STATEMENT_STATUS,
    ProfitSharingOrder,
    SettlementLine,
    SettlementStatement,
)
from o2o.timeutil import CHINA_TZ, as_utc

STATUS_OPTIONS = [
    (s, STATEMENT_STATUS.label(s)) for s in (READY, SHARING, SHARING_FAILED, PAID, CARRIED)
]
# Badge colours of the shared stylesheet.
STATUS_BADGE = {
    READY: "pending",
    SHARING: "pending",
    SHARING_FAILED: "rejected",
    PAID: "approved",
    CARRIED: "info",
}
LINE_KIND_LABELS = {
    ledger.EARNED: "入账",
    ledger.REFUND: "退款",
    ledger.REVERSAL: "撤销核销",
    ledger.ADJUSTMENT: "调整",
}
SHARE_STATE_LABELS = {
    SHARE_PENDING: "待发起",
    SHARE_PROCESSING: "处理中",
    SHARE_FINISHED: "已完成",
    SHARE_FAILED: "失败",
    SHARE_SKIPPED: "无需分账",
}
PAYOUT_VIA_LABELS = ledger.PAYOUT_VIA


def period_text(start: datetime, end: datetime) -> str:
    """The period as people say it: one day ("2026-03-10") or a range of days (end inclusive)."""
    first = as_utc(start).astimezone(CHINA_TZ).date()
    last = (as_utc(end).astimezone(CHINA_TZ) - timedelta(microseconds=1)).date()
    return first.isoformat() if first == last else f"{first.isoformat()} 至 {last.isoformat()}"


@dataclass(frozen=True)
class LineView:
    line: SettlementLine
    kind_label: str
    title: str


def line_views(session: Session, lines: list[SettlementLine]) -> list[LineView]:
    """Each line with the title of the order line it came from (the shipping fee has none)."""
    ids = {line.line_id for line in lines if line.line_id is not None}
    titles: dict[int, str] = {}
    if ids:
        for line_id, title, sku_name in session.execute(
            select(OrderLine.id, OrderLine.title, OrderLine.sku_name).where(OrderLine.id.in_(ids))
        ):
            titles[line_id] = f"{title}（{sku_name}）" if sku_name else title
    views = []
    for line in lines:
        if line.line_id is not None:
            title = titles.get(line.line_id, "—")
        elif line.order_no:
            title = "运费"
        else:
            title = "—"
        views.append(LineView(line, LINE_KIND_LABELS.get(line.kind, line.kind), title))
    return views


def sharing_orders(session: Session, statement_id: int) -> list[ProfitSharingOrder]:
    return list(
        session.scalars(
            select(ProfitSharingOrder)
            .where(ProfitSharingOrder.statement_id == statement_id)
            .order_by(ProfitSharingOrder.id)
        )
    )


def payout_text(statement: SettlementStatement) -> str:
    """打款 column: the bank reference, or where the 分账 stands."""
    if statement.payout_via == "bank" and statement.bank_reference:
        return f"银行转账 · 流水号 {statement.bank_reference}"
    if statement.payout_via == "wechat_profit_sharing":
        return f"微信支付分账 · {STATEMENT_STATUS.label(statement.status)}"
    if statement.status == CARRIED:
        return "并入下一期结算"
    return "—"


def detail_context(session: Session, statement: SettlementStatement) -> dict[str, object]:
    """The template context of a statement's detail, shared by console and admin."""
    carried_from = list(
        session.scalars(
            select(SettlementStatement.statement_no)
            .where(SettlementStatement.carried_into_id == statement.id)
            .order_by(SettlementStatement.id)
        )
    )
    carried_into = (
        session.scalar(
            select(SettlementStatement.statement_no).where(
                SettlementStatement.id == statement.carried_into_id
            )
        )
        if statement.carried_into_id
        else None
    )
    return {
        "statement": statement,
        "lines": line_views(session, service.lines_of(session, statement.id)),
        "shares": sharing_orders(session, statement.id),
        "carried_from": carried_from,
        "carried_into": carried_into,
    }


def template_globals() -> dict[str, object]:
    """Labels and helpers every settlement template uses."""
    return {
        "statement_status": STATEMENT_STATUS,
        "status_badge": STATUS_BADGE,
        "share_state_labels": SHARE_STATE_LABELS,
        "payout_via_labels": PAYOUT_VIA_LABELS,
        "period_text": period_text,
        "payout_text": payout_text,
    }
