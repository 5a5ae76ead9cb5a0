"""退款异常 / 异常退款: refunds the provider took from the merchant account but could not pay into
the payer's account (WeChat Pay ``ABNORMAL``: a cancelled or frozen bank card, a closed
account).

Such a refund is not a failure: its money has left, so the reserved amount is never released
(``service._refund_abnormal``). The operator sees it (admin 退款, ``GET
/api/v1/admin/refunds?status=abnormal``) and has it paid elsewhere (WeChat Pay's 异常退款 API):
to the payer's bank card (``USER_BANK_CARD``: bank type, card number and name, sent encrypted,
never stored) or back to the merchant's bank account (``MERCHANT_BANK_CARD``, to be paid to the
consumer outside WeChat Pay). The refund is then ``processing`` again and ends as every refund
does (notification, or the sweep's query).

Two operators applying at once: the provider accepts only the first (the refund is no longer
ABNORMAL there) and refuses the second, which is a 409 here; nothing is sent twice.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.config import Settings
from o2o.db import Database
from o2o.errors import Conflict, NotFound, ValidationFailed
from o2o.payments import registry, service
from o2o.payments.models import (
    ABNORMAL_TO_USER_CARD,
    REFUND_ABNORMAL,
    REFUND_STATUS,
    Refund,
)
from o2o.payments.providers import ProviderRefused, ProviderUnavailable
from o2o.payments.schemas import AbnormalRefundIn
from o2o.timeutil import utcnow

__all__ = ["apply_abnormal_refund"]


def _locked(session: Session, refund_no: str) -> Refund:
    refund = session.scalar(
        select(Refund)
        .where(Refund.refund_no == refund_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if refund is None:
        raise NotFound("退款单不存在", code="refund_not_found")
    return refund


def _check(body: AbnormalRefundIn) -> None:
    if body.type == ABNORMAL_TO_USER_CARD:
        for field, label in (
            ("bank_type", "开户银行"),
            ("bank_account", "银行卡号"),
            ("real_name", "收款人姓名"),
        ):
            if not getattr(body, field):
                raise ValidationFailed(f"退至用户银行卡需要填写{label}", field=field)


def apply_abnormal_refund(
    db: Database, settings: Settings, refund_no: str, body: AbnormalRefundIn, *, actor_id: int
) -> str:
    """The operator's 异常退款 for an ``abnormal`` refund. 409 unless it is abnormal (or when
    the provider refuses), 503 when the provider cannot be reached (nothing changed: try again),
    422 for missing bank details."""
    _check(body)
    with db.transaction() as session:
        refund = _locked(session, refund_no)
        if refund.status != REFUND_ABNORMAL:
            raise Conflict(
                f"退款单当前状态为「{REFUND_STATUS.label(refund.status)}」，只有退款异常的退款单"
                "可以发起异常退款",
                code="refund_not_abnormal",
            )
        request = service.refund_request(session, refund)
        provider_name, provider_refund_id = refund.provider, refund.provider_refund_id
    provider = registry.find_provider(provider_name, settings)
    apply = getattr(provider, "apply_abnormal_refund", None)
    if apply is None:
        raise Conflict(
            f"支付方式 {provider_name} 不支持异常退款", code="abnormal_refund_unsupported"
        )
    try:
        event = apply(
            request,
            provider_refund_id=provider_refund_id,
            kind=body.type,
            bank_type=body.bank_type,
            bank_account=body.bank_account,
            real_name=body.real_name,
        )
    except ProviderUnavailable as exc:
        raise service.ProviderUnavailableError("支付服务暂时无法连接，请稍后重试") from exc
    except ProviderRefused as exc:
        raise service.ProviderRefusedError(exc.message, provider_code=exc.code) from exc
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="type") from exc
    now = utcnow()
    with db.transaction() as session:
        refund = _locked(session, refund_no)
        if refund.status == REFUND_ABNORMAL:
            refund.status = REFUND_STATUS.next_state(refund.status, "apply_abnormal")
            refund.abnormal_handling = body.type
            refund.abnormal_handled_by = actor_id
            refund.abnormal_handled_at = now
            refund.last_error = ""
            refund.next_attempt_at = now  # the sweep asks how it went
            refund.updated_at = now
    applied = service.record_and_apply(
        db, event, source="abnormal_refund", body=repr(dict(event.raw))[:10_000]
    )
    return applied.result
