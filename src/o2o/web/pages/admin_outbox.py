"""事件投递 for the operator: after-commit deliveries of domain events (``o2o.outbox``) — the
counts, those failing or failed with their last error, and 重新投递 for a failed one. Calls the
same services as ``/api/v1/admin/outbox``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from fastapi.responses import Response

from o2o import wiring
from o2o.errors import AppError
from o2o.outbox import service
from o2o.outbox.models import FAILED, OUTBOX_STATUS_LABELS, PENDING
from o2o.web.context import AdminPageDep, page_router
from o2o.web.nav import NavItem, add_nav

router = page_router()

add_nav(NavItem("admin", "事件投递", "/admin/outbox", order=64))

PAGE_SIZE = 50
# Tabs: failed for good, still retrying (pending with an error), and everything recent.
VIEWS = [("failed", "投递失败"), ("retrying", "重试中"), ("all", "全部")]


@router.get("/admin/outbox", name="admin_outbox")
def outbox(page: AdminPageDep, view: Annotated[str, Query(max_length=10)] = "failed") -> Response:
    view = view if view in dict(VIEWS) else "failed"
    status = {"failed": FAILED, "retrying": PENDING}.get(view)
    with page.read() as session:
        rows = service.list_deliveries(
            session, status=status, with_errors=view == "retrying", limit=PAGE_SIZE
        )
        summary = service.summary(session)
    return page.render(
        "admin/outbox.html",
        rows=rows,
        view=view,
        views=VIEWS,
        summary=summary,
        status_labels=OUTBOX_STATUS_LABELS,
        wired=wiring.table(),
    )


@router.post("/admin/outbox/{delivery_id}/retry", name="admin_outbox_retry")
def retry(page: AdminPageDep, delivery_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    try:
        with page.write() as session:
            service.retry(session, delivery_id)
    except AppError as exc:
        return page.redirect("/admin/outbox", flash=exc.detail, kind="error")
    return page.redirect("/admin/outbox?view=all", flash="已重新加入投递队列")
