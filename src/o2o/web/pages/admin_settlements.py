"""结算 and 对账 for the operator: every statement with filters, a statement's detail with
"标记已打款" (bank reference) and "发起分账" (WeChat Pay partner mode), and the reconciliation of a
WeChat Pay trade bill (pasted or uploaded) with its findings and the past imports. Calls the same
services as ``/api/v1/admin/settlements/...`` and ``/api/v1/admin/reconciliation``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from o2o.errors import AppError, Conflict, NotFound
from o2o.merchants.models import Merchant
from o2o.payments import registry
from o2o.payments.wechatpay_provider import WeChatPayProvider
from o2o.schemas import Schema
from o2o.settlement import bills, reconciliation, service, sharing
from o2o.settlement.models import (
    PAID,
    READY,
    SHARING,
    SHARING_FAILED,
    SOURCE_LABELS,
    STATEMENT_STATUS,
    ReconciliationImport,
    SettlementStatement,
)
from o2o.settlement.schemas import MAX_BILL_CHARS
from o2o.timeutil import format_china
from o2o.web.context import AdminPageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep, id_or_none
from o2o.web.nav import NavItem, add_nav
from o2o.web.settlement_view import STATUS_OPTIONS, detail_context, template_globals

router = page_router()

add_nav(
    NavItem("admin", "结算", "/admin/settlements", order=60),
    NavItem("admin", "对账", "/admin/reconciliation", order=65),
)

PAGE_SIZE = 50
IMPORTS_SHOWN = 20
StatementNo = Annotated[str, Path(max_length=40, pattern=r"^[0-9A-Za-z-]+$")]
ImportId = Annotated[int, Path(ge=1, le=2**62)]
Loose = Annotated[str, Query(max_length=200)]

BANK_REFERENCE_MESSAGE = "请填写银行流水号（1–100 字）"
BILL_UNREADABLE = (
    "无法解析微信支付交易账单：请粘贴或上传从微信支付商户平台下载的交易账单 CSV"
    "（表头、明细行和汇总行）"
)
# Findings by what the operator does about them.
FINDING_GROUPS = [
    ("本地缺失", ("payment_missing_here", "refund_missing_here")),
    ("账单缺失", ("payment_missing_on_bill", "refund_missing_on_bill")),
    ("金额不符", ("payment_amount_mismatch", "refund_amount_mismatch", "summary_mismatch")),
]


class MarkPaidForm(Schema):
    bank_reference: Annotated[str, Field(min_length=1, max_length=100)]


class BillForm(Schema):
    bill: Annotated[str, Field(max_length=MAX_BILL_CHARS)] = ""
    bill_date: date | None = None


def _merchant_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Merchant.id, Merchant.name).order_by(Merchant.id)).all())


# --- statements ----------------------------------------------------------------------------------


@router.get("/admin/settlements", name="admin_settlements")
def statements(
    page: AdminPageDep, status: Loose = "", merchant_id: Loose = "", before: Loose = ""
) -> Response:
    status = status if status in dict(STATUS_OPTIONS) else ""
    merchant = id_or_none(merchant_id)
    with page.read() as session:
        names = _merchant_names(session)
        merchant = merchant if merchant in names else None
        rows = service.list_statements(
            session,
            merchant_id=merchant,
            status=status or None,
            limit=PAGE_SIZE,
            before_id=id_or_none(before),
        )
    query = "&amp;".join(
        f"{k}={v}" for k, v in (("status", status), ("merchant_id", merchant or "")) if v
    )
    return page.render(
        "admin/settlements.html",
        statements=rows,
        merchant_names=names,
        status=status,
        merchant_id=merchant,
        statuses=STATUS_OPTIONS,
        filter_query=query,
        next_before=rows[-1].id if len(rows) == PAGE_SIZE else None,
        **template_globals(),
    )


def _partner_mode(page: PageContext) -> bool:
    provider = registry.find_provider(registry.WECHATPAY, page.settings)
    return isinstance(provider, WeChatPayProvider) and provider.partner


def _actions(
    page: PageContext, statement: SettlementStatement, merchant: Merchant | None
) -> dict[str, Any]:
    """Which buttons the detail shows (the services decide again on POST)."""
    payable = statement.payable_fen > 0
    can_share = (
        statement.status in (READY, SHARING)
        and payable
        and not statement.carried_in_fen
        and merchant is not None
        and bool(merchant.sub_mchid)
        and _partner_mode(page)
    )
    return {
        "can_mark_paid": payable and STATEMENT_STATUS.can(statement.status, "mark_paid"),
        "can_share": can_share,
        "share_label": "刷新分账结果" if statement.status == SHARING else "发起分账",
    }


def _render_statement(
    page: PageContext, no: str, form: Form[MarkPaidForm] | None = None, status: int = 200
) -> Response:
    with page.read() as session:
        statement = service.get_statement(session, no)
        merchant = session.get(Merchant, statement.merchant_id)
        context = detail_context(session, statement)
        actions = _actions(page, statement, merchant)
    return page.render(
        "admin/settlement.html",
        merchant=merchant,
        form=form or Form.blank(MarkPaidForm),
        status_code=status,
        **context,
        **actions,
        **template_globals(),
    )


@router.get("/admin/settlements/{statement_no}", name="admin_settlement")
def statement(page: AdminPageDep, statement_no: StatementNo) -> Response:
    return _render_statement(page, statement_no)


@router.post("/admin/settlements/{statement_no}/mark-paid", name="admin_settlement_mark_paid")
def mark_paid(page: AdminPageDep, statement_no: StatementNo, data: FormDataDep) -> Response:
    assert page.actor is not None
    actor_id = page.actor.user_id
    form = Form.parse(MarkPaidForm, data, messages={"bank_reference": BANK_REFERENCE_MESSAGE})

    def pay(session: Session, d: MarkPaidForm) -> SettlementStatement:
        found = service.get_statement(session, statement_no, lock=True)
        if found.status == PAID:
            # A second click (or another operator first): say so plainly.
            raise Conflict(
                f"结算单 {statement_no} 已于 {format_china(found.paid_at, '%Y-%m-%d')} 标记已打款"
                f"（流水号 {found.bank_reference or '—'}），无需重复操作",
                code="settlement_already_paid",
            )
        return service.mark_paid(
            session, statement_no, bank_reference=d.bank_reference, actor_id=actor_id
        )

    paid = form.submit(page.db, pay)
    if paid is None:
        return _render_statement(page, statement_no, form, status=form.status)
    return page.redirect(
        f"/admin/settlements/{statement_no}",
        flash=f"结算单 {statement_no} 已标记已打款（流水号 {paid.bank_reference}）",
    )


@router.post(
    "/admin/settlements/{statement_no}/profit-sharing", name="admin_settlement_profit_sharing"
)
def profit_sharing(page: AdminPageDep, statement_no: StatementNo) -> Response:
    assert page.actor is not None
    url = f"/admin/settlements/{statement_no}"
    try:
        done = sharing.profit_share(
            page.db, page.settings, statement_no, actor_id=page.actor.user_id
        )
    except NotFound:
        raise
    except AppError as exc:
        # Not partner mode, no sub_mchid, not WeChat Pay money, wrong state: a clear message.
        return page.redirect(url, flash=exc.detail, kind="error")
    if done.status == PAID:
        message = "分账已完成，结算单已打款"
    elif done.status == SHARING_FAILED:
        return page.redirect(url, flash=f"分账失败：{done.failure_reason}", kind="error")
    else:
        message = "已发起分账，微信支付处理中；稍后可刷新分账结果"
    return page.redirect(url, flash=message)


# --- reconciliation ------------------------------------------------------------------------------


def _grouped(findings: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    return [
        (title, [f for f in findings if f.get("kind") in kinds]) for title, kinds in FINDING_GROUPS
    ]


def _imports(session: Session) -> list[ReconciliationImport]:
    return list(
        session.scalars(
            select(ReconciliationImport)
            .order_by(ReconciliationImport.id.desc())
            .limit(IMPORTS_SHOWN)
        )
    )


def _render_reconciliation(
    page: PageContext,
    form: Form[BillForm] | None = None,
    shown: ReconciliationImport | None = None,
    status: int = 200,
) -> Response:
    with page.read() as session:
        imports = _imports(session)
        downloads = bills.recent(session)
    return page.render(
        "admin/reconciliation.html",
        form=form or Form.blank(BillForm),
        imports=imports,
        downloads=downloads,
        source_labels=SOURCE_LABELS,
        shown=shown,
        groups=_grouped(list(shown.findings or [])) if shown else [],
        status_code=status,
    )


@router.get("/admin/reconciliation", name="admin_reconciliation")
def reconciliation_page(page: AdminPageDep) -> Response:
    return _render_reconciliation(page)


@router.get("/admin/reconciliation/{import_id}", name="admin_reconciliation_import")
def reconciliation_import(page: AdminPageDep, import_id: ImportId) -> Response:
    with page.read() as session:
        shown = session.get(ReconciliationImport, import_id)
    if shown is None:
        raise NotFound("没有这次对账记录", code="reconciliation_not_found")
    return _render_reconciliation(page, shown=shown)


def _uploaded_text(form: Form[BillForm], upload: Any) -> str | None:
    """The uploaded file as text (UTF-8, as WeChat Pay serves it; a BOM is fine)."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    raw = upload.file.read(MAX_BILL_CHARS + 1)
    if not raw:
        form.fail("上传的文件是空的", field="bill")
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        form.fail("文件不是 UTF-8 编码的 CSV 文本：请上传微信支付交易账单 CSV", field="bill")
        return None
    if "\x00" in text:
        form.fail("文件不是 CSV 文本：请上传微信支付交易账单 CSV", field="bill")
        return None
    return text


@router.post("/admin/reconciliation", name="admin_reconciliation_import_bill")
def reconcile(page: AdminPageDep, data: FormDataDep) -> Response:
    assert page.actor is not None
    actor_id = page.actor.user_id
    form = Form.parse(BillForm, data, messages={"bill_date": "请输入有效的日期，如 2026-03-10"})
    uploaded = _uploaded_text(form, data.get("bill_file"))
    text = uploaded if uploaded is not None else (form.data.bill if form.data else "")
    if form.ok and not text.strip():
        form.fail("请粘贴账单内容或选择账单文件", field="bill")

    def run(session: Session, d: BillForm) -> int | None:
        report = reconciliation.reconcile(session, text, bill_date=d.bill_date)
        return reconciliation.store(session, report, text, actor_id=actor_id).import_id

    import_id = form.submit(page.db, run)
    if import_id is None:
        error = form.errors.get("bill", "")
        if error.startswith("无法解析微信支付交易账单"):
            form.errors["bill"] = BILL_UNREADABLE
        return _render_reconciliation(page, form, status=form.status or 422)
    return page.redirect(f"/admin/reconciliation/{import_id}", flash="账单已导入并完成对账")
