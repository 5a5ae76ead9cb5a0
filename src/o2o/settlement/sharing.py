"""分账: paying a statement through WeChat Pay profit sharing (partner mode).

In partner mode (``O2O_WECHATPAY_MODE=partner``) the consumer's money lands on the merchant's
own sub-merchant account, frozen for profit sharing. Settling a statement there means, for each
WeChat Pay order (transaction) its lines come from: share the commission of those lines to the
platform (receiver ``MERCHANT_ID`` = the service provider's ``sp_mchid``) and — once nothing more
can be earned on that order (completed or refunded) — unfreeze the rest to the sub-merchant
(``unfreeze_unsplit``). The remainder of an order still partly unearned stays frozen until its
last line is settled. The payout (``wechat_profit_sharing``) is posted when WeChat Pay reports
every sharing order ``FINISHED`` — in the answer, from WeChat Pay's 分账动账 notification
(``PROFITSHARING.SUCCESS`` at the notify URL: the platform, as receiver, was paid its
commission; applied here, then the order is queried at once for the rest), or later by query
(the worker job ``settlement_profit_sharing`` and a repeated POST both query); a receiver
``CLOSED`` makes the statement ``sharing_failed`` for the operator.

Adding the platform as receiver (``MERCHANT_ID`` = ``sp_mchid``) needs its full registered name
(``O2O_WECHATPAY_MERCHANT_NAME``), which the adapter sends encrypted with the platform key.

Flow: (1) a database transaction validates the statement, moves it to ``sharing`` and writes
the sharing orders (``pending``); (2) the calls to WeChat Pay happen outside any transaction,
each with its own ``out_order_no`` so a retry is deduplicated by WeChat Pay; (3) another
transaction records the answers and, when all finished, posts the payout.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.config import Settings
from o2o.db import Database
from o2o.errors import Conflict
from o2o.merchants.models import Merchant
from o2o.orders.models import COMPLETED, REFUNDED, Order
from o2o.payments import registry
from o2o.payments.models import Payment
from o2o.payments.providers import (
    SHARING_SUCCEEDED,
    ProfitSharingEvent,
    ProviderRefused,
    ProviderUnavailable,
)
from o2o.payments.wechatpay import ProfitSharingReceiver

# The provider's translation of adapter errors (network/unverifiable → unavailable, else refused).
from o2o.payments.wechatpay_provider import WeChatPayProvider, _translated
from o2o.settlement import service
from o2o.settlement.models import (
    SHARE_FAILED,
    SHARE_FINISHED,
    SHARE_PENDING,
    SHARE_PROCESSING,
    SHARE_SKIPPED,
    SHARING,
    STATEMENT_STATUS,
    ProfitSharingOrder,
    SettlementStatement,
)
from o2o.timeutil import utcnow

log = logging.getLogger(__name__)

VIA = "wechat_profit_sharing"
# Orders on which nothing more will be earned: their frozen remainder can be released.
FINAL_ORDER_STATUSES = frozenset({COMPLETED, REFUNDED})
RECEIVER_RELATION = "SERVICE_PROVIDER"


def _provider(settings: Settings) -> WeChatPayProvider:
    provider = registry.find_provider(registry.WECHATPAY, settings)
    if not isinstance(provider, WeChatPayProvider) or not provider.partner:
        raise Conflict(
            "未开通微信支付服务商（partner）模式，不能分账；请改用银行打款",
            code="wechatpay_partner_not_configured",
        )
    if not provider.settings.merchant_name.strip():
        raise Conflict(
            "未配置平台商户全称（O2O_WECHATPAY_MERCHANT_NAME）：微信支付添加分账接收方时必须提供，"
            "不能分账；请改用银行打款",
            code="wechatpay_merchant_name_missing",
        )
    return provider


def _prepare(db: Database, settings: Settings, no: str, actor_id: int | None) -> int:
    """Phase 1: validate, move to ``sharing``, write the sharing orders. Returns the id."""
    with db.transaction() as session:
        statement = service.get_statement(session, no, lock=True)
        if statement.status == SHARING:
            return statement.id  # already under way: refresh it
        _provider(settings)  # refuse before changing anything when partner mode is off
        STATEMENT_STATUS.next_state(statement.status, "start_sharing")
        merchant = session.get(Merchant, statement.merchant_id)
        if merchant is None or not merchant.sub_mchid:
            raise Conflict(
                "该商户没有微信支付特约商户号（sub_mchid），不能分账；请改用银行打款",
                code="settlement_not_partner",
            )
        if statement.payable_fen <= 0:
            raise Conflict(
                f"结算单 {no} 应结金额为 {statement.payable_fen} 分，无需打款",
                code="settlement_nothing_to_pay",
            )
        if statement.carried_in_fen:
            raise Conflict(
                "结算单含结转的负数金额，无法通过分账结清；请改用银行打款",
                code="settlement_carried_in",
            )
        lines = service.lines_of(session, statement.id)
        payment_nos = {line.payment_no for line in lines}
        payments = {
            p.payment_no: p
            for p in session.scalars(
                select(Payment).where(Payment.payment_no.in_([n for n in payment_nos if n]))
            )
        }
        not_wechat = sorted(
            str(line.payment_no)
            for line in lines
            if line.payment_no not in payments
            or payments[str(line.payment_no)].provider != registry.WECHATPAY
            or not line.order_no
        )
        if not_wechat:
            raise Conflict(
                f"结算单含非微信支付的款项（{', '.join(not_wechat[:3])}），不能分账；请改用银行打款",
                code="settlement_not_wechatpay",
            )
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for line in lines:
            groups[(str(line.payment_no), str(line.order_no))].append(line)
        orders = {
            o.order_no: o
            for o in session.scalars(
                select(Order).where(Order.order_no.in_([k[1] for k in groups]))
            )
        }
        now = utcnow()
        for index, ((payment_no, order_no), group) in enumerate(sorted(groups.items()), start=1):
            payment = payments[payment_no]
            order = orders.get(order_no)
            single = (
                order is not None
                and order.payment_id == payment.id
                and (
                    len(
                        list(
                            session.scalars(select(Order.id).where(Order.payment_id == payment.id))
                        )
                    )
                    == 1
                )
            )
            session.add(
                ProfitSharingOrder(
                    statement_id=statement.id,
                    out_order_no=f"{statement.statement_no}-{index}",
                    payment_no=payment_no,
                    order_no=order_no,
                    sub_mchid=merchant.sub_mchid,
                    # The order's own WeChat Pay transaction id when recorded; a plain partner
                    # order's is the payment's; otherwise asked for (phase 2, 合单 query).
                    transaction_id=(getattr(order, "provider_txn_id", "") or "")
                    or (payment.provider_txn_id if single else ""),
                    commission_fen=sum(line.commission_fen for line in group),
                    net_fen=sum(line.net_fen for line in group),
                    unfreeze=order is not None and order.status in FINAL_ORDER_STATUSES,
                    created_at=now,
                    updated_at=now,
                )
            )
        statement.status = STATEMENT_STATUS.next_state(statement.status, "start_sharing")
        statement.payout_via = VIA
        statement.paid_by = actor_id
        statement.updated_at = now
        return statement.id


def _combined_transaction_id(provider: WeChatPayProvider, payment_no: str, order_no: str) -> str:
    """The WeChat Pay transaction id of one sub-order of a combined payment (合单)."""
    with _translated():
        data = provider.client.query_combine_order(payment_no)
    for sub in data.get("sub_orders") or []:
        if sub.get("out_trade_no") == order_no and sub.get("transaction_id"):
            return str(sub["transaction_id"])
    raise ProviderRefused("ORDER_NOT_EXIST", f"微信支付没有子单 {order_no} 的交易号")


def _state_of(answer: dict[str, Any]) -> str:
    receivers = answer.get("receivers") or []
    if any(r.get("result") == "CLOSED" for r in receivers):
        return SHARE_FAILED
    if answer.get("state") == "FINISHED":
        return SHARE_FINISHED
    return SHARE_PROCESSING


def _call(provider: WeChatPayProvider, share: dict[str, Any]) -> dict[str, Any]:
    """Send (or, once sent, query) one sharing order. Returns the fields to record."""
    client = provider.client
    tid = share["transaction_id"]
    try:
        if not tid:
            tid = _combined_transaction_id(provider, share["payment_no"], share["order_no"])
        with _translated():
            if share["state"] == SHARE_PROCESSING:
                answer = client.query_profit_sharing(
                    share["out_order_no"], transaction_id=tid, sub_mchid=share["sub_mchid"]
                )
            elif share["commission_fen"] > 0:
                client.add_profit_sharing_receiver(
                    type="MERCHANT_ID",
                    account=provider.config.mchid,
                    relation_type=RECEIVER_RELATION,
                    name=provider.settings.merchant_name.strip(),
                    sub_mchid=share["sub_mchid"],
                )
                answer = client.profit_sharing(
                    transaction_id=tid,
                    out_order_no=share["out_order_no"],
                    receivers=[
                        ProfitSharingReceiver(
                            type="MERCHANT_ID",
                            account=provider.config.mchid,
                            amount_fen=share["commission_fen"],
                            description="平台佣金",
                        )
                    ],
                    unfreeze_unsplit=share["unfreeze"],
                    sub_mchid=share["sub_mchid"],
                )
            elif share["unfreeze"]:
                answer = client.unfreeze_profit_sharing(
                    transaction_id=tid,
                    out_order_no=share["out_order_no"],
                    description="结算解冻",
                    sub_mchid=share["sub_mchid"],
                )
            else:
                # No commission to take and the order is still open: nothing to do yet.
                return {"transaction_id": tid, "state": SHARE_SKIPPED, "last_error": ""}
    except ProviderUnavailable as exc:
        # No (trustworthy) answer: ask again later with the same out_order_no.
        return {"transaction_id": tid, "state": share["state"], "last_error": str(exc)[:500]}
    except ProviderRefused as exc:
        return {
            "transaction_id": tid,
            "state": SHARE_FAILED,
            "last_error": f"{exc.code}: {exc.message}"[:500],
        }
    return {
        "transaction_id": tid,
        "state": _state_of(answer),
        "wechat_order_id": str(answer.get("order_id") or ""),
        "result": answer,
        "last_error": "",
    }


FIELDS = ("id", "out_order_no", "payment_no", "order_no", "sub_mchid", "transaction_id")


def advance(db: Database, settings: Settings, statement_id: int) -> SettlementStatement:
    """Phases 2 and 3 for a statement in ``sharing``: call or query WeChat Pay for every
    unfinished sharing order, record the answers, and settle when everything finished."""
    with db.transaction(readonly=True) as session:
        todo = [
            {
                **{f: getattr(s, f) for f in FIELDS},
                "commission_fen": s.commission_fen,
                "unfreeze": s.unfreeze,
                "state": s.state,
            }
            for s in session.scalars(
                select(ProfitSharingOrder).where(
                    ProfitSharingOrder.statement_id == statement_id,
                    ProfitSharingOrder.state.in_([SHARE_PENDING, SHARE_PROCESSING]),
                )
            )
        ]
    if todo:
        provider = _provider(settings)
        answers = {share["id"]: _call(provider, share) for share in todo}
    else:
        answers = {}
    with db.transaction() as session:
        statement = session.scalar(
            select(SettlementStatement)
            .where(SettlementStatement.id == statement_id)
            .with_for_update()
        )
        assert statement is not None
        now = utcnow()
        shares = list(
            session.scalars(
                select(ProfitSharingOrder)
                .where(ProfitSharingOrder.statement_id == statement_id)
                .with_for_update()
            )
        )
        for share in shares:
            answer = answers.get(share.id)
            if answer is None or share.state not in (SHARE_PENDING, SHARE_PROCESSING):
                continue
            share.attempts += 1
            share.updated_at = now
            for key, value in answer.items():
                setattr(share, key, value)
        _conclude(session, statement, shares, now)
        return statement


def _conclude(
    session: Session,
    statement: SettlementStatement,
    shares: Sequence[ProfitSharingOrder],
    now: datetime,
) -> None:
    """A statement in ``sharing`` whose orders all finished is paid; one failed: failed."""
    if statement.status != SHARING:
        return
    states = {share.state for share in shares}
    if SHARE_FAILED in states:
        statement.status = STATEMENT_STATUS.next_state(statement.status, "sharing_failed")
        statement.failure_reason = "; ".join(
            f"{s.out_order_no}: {s.last_error or s.result.get('state', '')}"
            for s in shares
            if s.state == SHARE_FAILED
        )[:500]
        statement.updated_at = now
    elif states <= {SHARE_FINISHED, SHARE_SKIPPED}:
        service.record_payout(
            session, statement, action="finish_sharing", via=VIA, actor_id=statement.paid_by
        )


def profit_share(
    db: Database, settings: Settings, no: str, *, actor_id: int | None
) -> SettlementStatement:
    """POST …/profit-sharing: start 分账 for a ready statement, or push one under way."""
    statement_id = _prepare(db, settings, no, actor_id)
    return advance(db, settings, statement_id)


def advance_all(db: Database, settings: Settings, *, limit: int = 50) -> int:
    """The worker job: query WeChat Pay for statements whose 分账 is under way."""
    if not isinstance(registry.find_provider(registry.WECHATPAY, settings), WeChatPayProvider):
        return 0
    with db.transaction(readonly=True) as session:
        ids = list(
            session.scalars(
                select(SettlementStatement.id)
                .where(SettlementStatement.status == SHARING)
                .order_by(SettlementStatement.updated_at)
                .limit(limit)
            )
        )
    moved = 0
    for statement_id in ids:
        try:
            if advance(db, settings, statement_id).status != SHARING:
                moved += 1
        except Conflict:
            continue
    return moved


# --- 分账动账 notifications ---------------------------------------------------------------------


def _record_receiver(share: ProfitSharingOrder, event: ProfitSharingEvent) -> str:
    """Mark the notified receiver paid in the share's last known answer; the share is finished
    when every receiver WeChat Pay listed is. Returns the result for the notification log."""
    result = dict(share.result or {})
    receivers = [dict(r) for r in result.get("receivers") or []]
    matched = [
        r
        for r in receivers
        if r.get("type") == event.receiver_type and r.get("account") == event.receiver_account
    ]
    if not matched:
        # Not in the answer we have (it was lost, or another receiver): the query decides.
        return "recorded"
    if matched[0].get("amount") != event.amount_fen:
        log.error(
            "sharing %s: WeChat Pay says %s fen to %s, we asked %s",
            share.out_order_no,
            event.amount_fen,
            event.receiver_account,
            matched[0].get("amount"),
        )
        return "amount_mismatch"
    if matched[0].get("result") == "SUCCESS":
        return "duplicate"
    matched[0]["result"] = "SUCCESS"
    matched[0]["finish_time"] = str(event.raw.get("resource", {}).get("success_time") or "")
    result["receivers"] = receivers
    share.result = result
    if share.state in (SHARE_PENDING, SHARE_PROCESSING) and all(
        r.get("result") == "SUCCESS" for r in receivers
    ):
        share.state = SHARE_FINISHED
        result["state"] = "FINISHED"
    return "applied"


def on_profit_sharing_event(db: Database, settings: Settings, event: ProfitSharingEvent) -> str:
    """The payment core's listener for a verified 分账动账 notification: record the receiver's
    money on its sharing order (settling the statement when that was the last of it), then ask
    WeChat Pay about the statement's orders right away — the notification is the cue, the
    query the full answer (what was unfrozen to the merchant)."""
    if event.provider != registry.WECHATPAY:
        return "ignored"
    if event.status != SHARING_SUCCEEDED:
        # 分账回退 (PROFITSHARING.RETURN): we never ask for returns; the operator looks.
        log.warning("sharing %s: %s notification ignored", event.out_order_no, event.status)
        return "ignored"
    with db.transaction() as session:
        statement_id = session.scalar(
            select(ProfitSharingOrder.statement_id).where(
                ProfitSharingOrder.out_order_no == event.out_order_no
            )
        )
        if statement_id is None:
            return "unknown"
        statement = session.scalar(
            select(SettlementStatement)
            .where(SettlementStatement.id == statement_id)
            .with_for_update()
        )
        assert statement is not None
        shares = list(
            session.scalars(
                select(ProfitSharingOrder)
                .where(ProfitSharingOrder.statement_id == statement_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        share = next(s for s in shares if s.out_order_no == event.out_order_no)
        now = utcnow()
        if event.transaction_id and not share.transaction_id:
            share.transaction_id = event.transaction_id[:64]
        if event.provider_order_id and not share.wechat_order_id:
            share.wechat_order_id = event.provider_order_id[:64]
        outcome = _record_receiver(share, event)
        share.updated_at = now
        _conclude(session, statement, shares, now)
        still_sharing = statement.status == SHARING
    if still_sharing:
        try:
            advance(db, settings, statement_id)
        except Exception:  # the worker asks again; the notification itself is applied
            log.exception("querying the sharing of statement %s failed", statement_id)
    return outcome
