"""Report routes: thin. ``?format=csv`` returns the same report as an Excel-ready CSV file."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from o2o.deps import ActorDep, AdminDep, ReadSessionDep
from o2o.merchants.access import MANAGERS
from o2o.reports import csv_export, service
from o2o.reports.schemas import ChannelsReport, MerchantSummary, ModelsReport, ReportFormat
from o2o.schemas import Id

admin_router = APIRouter(prefix="/api/v1/admin/reports", tags=["admin", "reports"])
merchant_router = APIRouter(prefix="/api/v1/merchants", tags=["reports"])

FromDay = Annotated[
    date | None,
    Query(
        alias="from", description="first day, China time (YYYY-MM-DD); default: 29 days before to"
    ),
]
ToDay = Annotated[
    date | None, Query(alias="to", description="last day, included (YYYY-MM-DD); default: today")
]
Format = Annotated[ReportFormat, Query(description="json (default) or csv")]
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}


def _csv(body: bytes, name: str, window: service.Window) -> Response:
    filename = f"{name}_{window.first.isoformat()}_{window.last.isoformat()}.csv"
    return Response(
        content=body,
        media_type=csv_export.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@admin_router.get("/channels", response_model=ChannelsReport, responses=CSV_RESPONSE)
def channels_report(
    _admin: AdminDep,
    session: ReadSessionDep,
    from_day: FromDay = None,
    to_day: ToDay = None,
    format: Format = "json",
) -> Any:
    window = service.make_window(from_day, to_day)
    report = service.channels_report(session, window)
    if format == "csv":
        return _csv(csv_export.channels_csv(report), "channels", window)
    return report


@admin_router.get("/models", response_model=ModelsReport, responses=CSV_RESPONSE)
def models_report(
    _admin: AdminDep,
    session: ReadSessionDep,
    from_day: FromDay = None,
    to_day: ToDay = None,
    category_id: Id | None = None,
    merchant_id: Id | None = None,
    format: Format = "json",
) -> Any:
    window = service.make_window(from_day, to_day)
    report = service.models_report(
        session, window, category_id=category_id, merchant_id=merchant_id
    )
    if format == "csv":
        return _csv(csv_export.models_csv(report), "models", window)
    return report


@merchant_router.get(
    "/{merchant_id}/reports/summary", response_model=MerchantSummary, responses=CSV_RESPONSE
)
def merchant_summary(
    merchant_id: Id,
    actor: ActorDep,
    session: ReadSessionDep,
    from_day: FromDay = None,
    to_day: ToDay = None,
    format: Format = "json",
) -> Any:
    actor.require_staff(merchant_id, MANAGERS)
    window = service.make_window(from_day, to_day)
    report = service.merchant_summary(session, merchant_id, window)
    if format == "csv":
        return _csv(csv_export.merchant_summary_csv(report), f"merchant{merchant_id}", window)
    return report


routers = [admin_router, merchant_router]
