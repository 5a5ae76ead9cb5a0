"""核销 on a clerk's phone: pick the store, type (or scan) the code, see the preview, confirm.

Everything goes through ``o2o.fulfilment.redemption`` (the same preview and redeem as the API,
with its audit and throttle); this page only explains each refusal in plain Chinese. The preview
is a GET (htmx swaps just the result, the page works without JavaScript); the confirmation is a
CSRF-checked POST that redirects back with a flash (POST → redirect → GET).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response
from sqlalchemy import func, select

from o2o.errors import AppError
from o2o.fulfilment import redemption, vouchers
from o2o.fulfilment.models import EXPIRED, REDEEMED, REFUNDED, Voucher
from o2o.merchants import service as merchants
from o2o.merchants.access import CLERK
from o2o.merchants.models import Store
from o2o.timeutil import format_china, utcnow
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import FormDataDep, id_or_none
from o2o.web.nav import NavItem, SlotItem, add_nav, provide

router = page_router()

add_nav(NavItem("console", "核销", "/console/m/{merchant_id}/redeem", order=15))

# Longer input is not a code (normalize_code allows at most 20 digits plus separators).
MAX_TYPED = 40


@dataclass
class Refusal:
    """Why a code cannot be redeemed here and now, for the clerk."""

    code: str
    message: str


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return ""
    return format_china(value) if isinstance(value, datetime) else ""


def _slot_message(starts_at: datetime, ends_at: datetime, now: datetime, early: int) -> str | None:
    """未到预约时间 / 已过预约时间 (None: inside the redemption window of the slot)."""
    span = f"{format_china(starts_at)}–{format_china(ends_at, '%H:%M')}"
    if now < starts_at - timedelta(minutes=early):
        return f"未到预约时间：预约场次 {span}，开场前 {early} 分钟起可核销"
    if now >= ends_at:
        return f"已过预约时间：预约场次 {span} 已结束"
    return None


def explain(exc: AppError, early_minutes: int) -> Refusal:
    """A service refusal as the sentence the clerk reads (by its stable code)."""
    code = exc.code
    if code == "voucher_not_found":
        return Refusal(code, "未找到券码，请核对后重新输入")
    if code == "voucher_already_redeemed":
        # redemption.redeem already says when and where ("该券码已于 … 在「…」核销").
        return Refusal(code, exc.detail if "于" in exc.detail else "该券码已核销")
    if code == "voucher_refunded":
        return Refusal(code, "该券码已退款，不能核销")
    if code == "voucher_expired":
        return Refusal(code, "该券码已过期，不能核销")
    if code == "store_not_valid_for_voucher":
        return Refusal(code, "该券不能在本店使用")
    if code == "store_not_allowed":
        return Refusal(code, "您不能在该门店核销，请选择您所在的门店")
    if code == "slot_not_now":
        starts, ends = exc.extra.get("slot_starts_at"), exc.extra.get("slot_ends_at")
        if starts and ends:
            msg = _slot_message(
                datetime.fromisoformat(starts), datetime.fromisoformat(ends), utcnow(),
                int(exc.extra.get("early_minutes", early_minutes)),
            )  # fmt: skip
            if msg:
                return Refusal(code, msg)
        return Refusal(code, "不在预约场次的核销时间内")
    if code == "redemption_throttled":
        return Refusal(code, f"操作过于频繁：{exc.detail}")
    return Refusal(code, exc.detail or "无法核销")


def _preview_refusal(
    preview: dict[str, Any], store_id: int | None, store_names: dict[int, str], early: int
) -> Refusal | None:
    """The same checks redeem makes, told before the clerk confirms (redeem still decides)."""
    now = utcnow()
    status = preview["status"]
    if status == REDEEMED:
        where = store_names.get(preview["redeemed_store_id"], "")
        at = _when(preview["redeemed_at"])
        return Refusal(
            "voucher_already_redeemed",
            f"该券码已于 {at} 在「{where}」核销" if where else f"该券码已于 {at} 核销",
        )
    if status == REFUNDED:
        return Refusal("voucher_refunded", "该券码已退款，不能核销")
    if status == EXPIRED:
        return Refusal("voucher_expired", "该券码已过期，不能核销")
    if store_id is not None and store_id not in preview["store_ids"]:
        return Refusal("store_not_valid_for_voucher", "该券不能在本店使用")
    # Same order as redeem: a booked slot's window first (its validity ends with the slot).
    slot = preview["slot"]
    if slot is not None and slot["starts_at"] is not None:
        msg = _slot_message(
            slot["starts_at"], slot["ends_at"] or preview["valid_until"], now, early
        )
        if msg:
            return Refusal("slot_not_now", msg)
    if preview["valid_until"] <= now:
        return Refusal("voucher_expired", "该券码已过期，不能核销")
    if preview.get("unusable_reason"):
        return Refusal("deal_not_usable_now", preview["unusable_reason"])
    return None


def _stores(page: PageContext) -> tuple[list[Store], dict[int, str]]:
    """(stores this member may redeem at, names of every store of the merchant)."""
    assert page.actor is not None and page.merchant is not None
    visible = page.actor.visible_store_ids(page.merchant.id)
    with page.read() as session:
        every = list(merchants.list_stores(session, page.merchant.id))
    names = {s.id: s.name for s in every}
    usable = [s for s in every if s.is_active and (visible is None or s.id in visible)]
    return usable, names


def _int_or_none(raw: Any) -> int | None:
    return id_or_none(raw)


def _render(
    page: PageContext,
    *,
    stores: list[Store],
    store_id: int | None,
    code: str,
    preview: dict[str, Any] | None = None,
    refusal: Refusal | None = None,
    store_names: dict[int, str] | None = None,
    status_code: int = 200,
) -> Response:
    return page.render(
        "console/redeem.html",
        stores=stores,
        store_id=store_id,
        code=code,
        preview=preview,
        refusal=refusal,
        store_names=store_names or {},
        status_code=status_code,
    )


@router.get("/console/m/{merchant_id}/redeem", name="console_redeem")
def redeem_page(
    page: ConsolePageDep,
    code: Annotated[str, Query()] = "",
    store_id: Annotated[str, Query()] = "",
) -> Response:
    """The form; with ``code`` also the preview (and why it cannot be redeemed, if so)."""
    assert page.actor is not None and page.merchant is not None
    stores, names = _stores(page)
    chosen = _int_or_none(store_id)
    if chosen not in {s.id for s in stores}:
        chosen = stores[0].id if len(stores) == 1 else None
    typed = code.strip()[:MAX_TYPED]
    if not typed:
        return _render(page, stores=stores, store_id=chosen, code="")
    rules = vouchers.redemption_settings(page.settings)
    try:
        preview = redemption.preview(page.db, page.actor, page.merchant.id, typed, rules=rules)
    except AppError as exc:
        refusal = explain(exc, rules.redemption_early_minutes)
        return _render(page, stores=stores, store_id=chosen, code=typed, refusal=refusal)
    refusal = _preview_refusal(preview, chosen, names, rules.redemption_early_minutes)
    return _render(
        page,
        stores=stores,
        store_id=chosen,
        code=typed,
        preview=preview,
        refusal=refusal,
        store_names=names,
    )


@router.post("/console/m/{merchant_id}/redeem")
def redeem_submit(page: ConsolePageDep, data: FormDataDep) -> Response:
    """Confirm: redeem through the service; a refusal re-renders the page with the reason."""
    assert page.actor is not None and page.merchant is not None
    stores, names = _stores(page)
    raw_code = data.get("code")
    typed = raw_code.strip()[:MAX_TYPED] if isinstance(raw_code, str) else ""
    store_id = _int_or_none(data.get("store_id"))
    rules = vouchers.redemption_settings(page.settings)
    base = f"/console/m/{page.merchant.id}/redeem"
    if store_id is None:
        refusal = Refusal("store_required", "请选择核销门店")
        return _render(
            page, stores=stores, store_id=None, code=typed, refusal=refusal, status_code=422
        )
    try:
        result = redemption.redeem(
            page.db, page.actor, page.merchant.id, typed, store_id, rules=rules
        )
    except AppError as exc:
        refusal = explain(exc, rules.redemption_early_minutes)
        chosen = store_id if store_id in {s.id for s in stores} else None
        return _render(
            page,
            stores=stores,
            store_id=chosen,
            code=typed,
            refusal=refusal,
            store_names=names,
            status_code=exc.status,
        )
    title = result["listing_title"]
    shown = result["voucher"]["code_display"]
    return page.redirect(
        f"{base}?store_id={store_id}",
        flash=f"核销成功：{title}（券码 {shown}，{names.get(store_id, '')}）",
    )


# --- 今日概览: 今日核销 ------------------------------------------------------------------


def today_summary(page: PageContext) -> Any:
    """The merchant's figures for today (China time) from the reports service, once per page;
    None for clerks (the merchant's totals are for owners and managers, as in the API)."""
    if page.role is None or page.role.role == CLERK or page.merchant is None:
        return None
    if "today_summary" not in page.extra:
        from o2o.reports import service as reports

        window = reports.make_window(reports.china_today(), reports.china_today())
        with page.read() as session:
            page.extra["today_summary"] = reports.merchant_summary(
                session, page.merchant.id, window
            ).total
    return page.extra["today_summary"]


@provide("console.dashboard", "today_redemptions", order=20)
def today_redemptions_card(page: PageContext) -> SlotItem | None:
    if page.role is None or page.merchant is None:
        return None
    if page.role.role == CLERK:
        # A clerk: redemptions at its own stores today.
        from o2o.reports import service as reports

        window = reports.make_window(reports.china_today(), reports.china_today())
        with page.read() as session:
            count = session.scalar(
                select(func.count())
                .select_from(Voucher)
                .where(
                    Voucher.merchant_id == page.merchant.id,
                    Voucher.status == REDEEMED,
                    Voucher.redeemed_store_id.in_(sorted(page.role.store_ids)),
                    window.contains(Voucher.redeemed_at),
                )
            )
        value, hint = int(count or 0), "您的门店"
    else:
        summary = today_summary(page)
        value, hint = summary.vouchers_redeemed, "全部门店"
    return SlotItem(
        "console/_stat.html",
        {
            "label": "今日核销",
            "value": f"{value} 张",
            "hint": hint,
            "href": f"/console/m/{page.merchant.id}/redeem",
        },
    )
