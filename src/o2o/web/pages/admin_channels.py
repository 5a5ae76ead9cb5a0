"""渠道 (traffic entry points) for the operator: list with the last 7 days' visits and orders,
create, activate / deactivate, and each channel's 推广链接 (``?ch=CODE``) with its QR code for
posters. Calls ``o2o.channels.service`` and ``o2o.reports.service`` like the API does."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Annotated

import segno
from fastapi import Query
from fastapi.responses import Response

from o2o.channels import service as channels
from o2o.channels.schemas import ChannelIn
from o2o.errors import NotFound
from o2o.reports import service as reports
from o2o.reports.schemas import ChannelRow
from o2o.web.context import AdminPageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, add_nav

router = page_router()

add_nav(NavItem("admin", "渠道", "/admin/channels", order=40))

PAGE_SIZE = 50
RECENT_DAYS = 7
CODE_MESSAGE = "渠道编码只能包含字母、数字、-、_，2–40 位，以字母或数字开头"
MESSAGES = {"code": CODE_MESSAGE, "name": "请填写渠道名称（1–100 字）", "kind": "请选择渠道类型"}
KIND_OPTIONS = list(channels.KIND_LABELS.items())
Cursor = Annotated[int | None, Query(ge=1, le=2**62)]


def promo_link(page: PageContext, code: str) -> str:
    """The consumer link a poster or partner carries: the H5 home with ``?ch=CODE``."""
    return f"{page.settings.public_base_url.rstrip('/')}/?ch={code}"


def _recent(page: PageContext) -> dict[str, ChannelRow]:
    """Visits and orders of the last ``RECENT_DAYS`` days per channel code (the channels report)."""
    today = reports.china_today()
    window = reports.make_window(today - timedelta(days=RECENT_DAYS - 1), today)
    with page.read() as session:
        report = reports.channels_report(session, window)
    return {row.channel_code: row for row in report.rows}


def _render(
    page: PageContext, form: Form | None = None, cursor: int | None = None, status: int = 200
) -> Response:
    with page.read() as session:
        rows = list(channels.list_channels(session, limit=PAGE_SIZE, after_id=cursor))
    return page.render(
        "admin/channels.html",
        channels=rows,
        recent=_recent(page),
        recent_days=RECENT_DAYS,
        links={c.code: promo_link(page, c.code) for c in rows},
        kind_labels=channels.KIND_LABELS,
        kind_options=KIND_OPTIONS,
        form=form or Form.blank(ChannelIn, kind="poster_qr"),
        next_cursor=rows[-1].id if len(rows) == PAGE_SIZE else None,
        status_code=status,
    )


@router.get("/admin/channels", name="admin_channels")
def channel_list(page: AdminPageDep, cursor: Cursor = None) -> Response:
    return _render(page, cursor=cursor)


@router.post("/admin/channels", name="admin_channel_create")
def create(page: AdminPageDep, data: FormDataDep) -> Response:
    form = Form.parse(ChannelIn, data, messages=MESSAGES)
    channel = form.submit(
        page.db,
        lambda s, d: channels.create_channel(s, code=d.code, name=d.name, kind=d.kind),
        field_by_code={"channel_code_taken": "code"},
    )
    if channel is None:
        return _render(page, form, status=form.status)
    return page.redirect("/admin/channels", flash=f"已创建渠道「{channel.name}」（{channel.code}）")


def _set_active(page: PageContext, code: str, active: bool) -> Response:
    with page.write() as session:
        channel = channels.channel_by_code(session, code)
        if channel is None:
            raise NotFound("渠道不存在", code="channel_not_found")
        channel = channels.update_channel(session, channel.id, is_active=active)
        name = channel.name
    verb = "启用" if active else "停用"
    return page.redirect("/admin/channels", flash=f"已{verb}渠道「{name}」")


@router.post("/admin/channels/{code}/activate", name="admin_channel_activate")
def activate(page: AdminPageDep, code: str) -> Response:
    return _set_active(page, code, True)


@router.post("/admin/channels/{code}/deactivate", name="admin_channel_deactivate")
def deactivate(page: AdminPageDep, code: str) -> Response:
    return _set_active(page, code, False)


@router.get("/admin/channels/{code}/qr.svg", name="admin_channel_qr")
def qr(page: AdminPageDep, code: str) -> Response:
    """The 推广链接 as a QR code (SVG: prints sharp on a poster at any size)."""
    with page.read() as session:
        channel = channels.channel_by_code(session, code)
    if channel is None:
        raise NotFound("渠道不存在", code="channel_not_found")
    buffer = io.BytesIO()
    segno.make(promo_link(page, channel.code), error="m").save(
        buffer, kind="svg", scale=6, border=2, xmldecl=False, title=f"{channel.name} 推广二维码"
    )
    return Response(
        buffer.getvalue(),
        media_type="image/svg+xml",
        headers={
            "Content-Disposition": f'inline; filename="channel-{channel.code}.svg"',
            "Cache-Control": "private, max-age=300",
        },
    )
