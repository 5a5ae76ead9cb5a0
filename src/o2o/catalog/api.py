"""Catalogue routes: thin wrappers around ``o2o.catalog.service``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from sqlalchemy.orm import Session

from o2o.catalog import service
from o2o.catalog.models import Listing
from o2o.catalog.schemas import (
    AdjustmentOut,
    AdjustmentResult,
    GoodsListingIn,
    ListingDetail,
    ListingSummary,
    ListingUpdate,
    ServiceListingIn,
    SkuIn,
    SkuOut,
    SkuUpdate,
    SlotOut,
    SlotsIn,
    StockAdjustmentIn,
)
from o2o.deps import ActorDep, OptionalActorDep, ReadSessionDep, SessionDep
from o2o.merchants.access import Actor
from o2o.schemas import Id, Latitude, Longitude, Page, PageLimit
from o2o.timeutil import as_utc

router = APIRouter(prefix="/api/v1", tags=["catalog"])

ListingBody = Annotated[GoodsListingIn | ServiceListingIn, Body(discriminator="kind")]
IdCursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]
# microseconds since 1970 (16 digits reach the year 2286) and the slot id
SlotCursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,16}_[0-9]{1,18}$")]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _detail(
    session: Session,
    listing: Listing,
    actor: Actor | None,
    lat: float | None = None,
    lng: float | None = None,
) -> ListingDetail:
    return ListingDetail.model_validate(
        service.listing_detail(session, listing, actor, lat=lat, lng=lng)
    )


@router.post("/merchants/{merchant_id}/listings", status_code=201, response_model=ListingDetail)
def create_listing(
    merchant_id: Id, body: ListingBody, actor: ActorDep, session: SessionDep
) -> ListingDetail:
    listing = service.create_listing(session, actor, merchant_id, body)
    return _detail(session, listing, actor)


@router.get("/merchants/{merchant_id}/listings", response_model=Page[ListingSummary])
def list_merchant_listings(
    merchant_id: Id,
    actor: OptionalActorDep,
    session: ReadSessionDep,
    status: Literal["draft", "published", "unpublished"] | None = None,
    kind: Literal["goods", "service"] | None = None,
    limit: PageLimit = 50,
    cursor: IdCursor = None,
) -> Page[ListingSummary]:
    items = service.list_merchant_listings(
        session,
        actor,
        merchant_id,
        status=status,
        kind=kind,
        limit=limit,
        after_id=int(cursor) if cursor else None,
    )
    return Page[ListingSummary](
        items=[ListingSummary.model_validate(service.listing_summary(i)) for i in items],
        next_cursor=str(items[-1].id) if len(items) == limit else None,
    )


@router.get("/listings/{listing_id}", response_model=ListingDetail)
def get_listing(
    listing_id: Id,
    actor: OptionalActorDep,
    session: ReadSessionDep,
    lat: Latitude | None = None,
    lng: Longitude | None = None,
) -> ListingDetail:
    listing = service.visible_listing(session, listing_id, actor)
    return _detail(session, listing, actor, lat, lng)


@router.patch("/listings/{listing_id}", response_model=ListingDetail)
def update_listing(
    listing_id: Id, body: ListingUpdate, actor: ActorDep, session: SessionDep
) -> ListingDetail:
    listing = service.update_listing(
        session, actor, listing_id, body.model_dump(exclude_unset=True)
    )
    return _detail(session, listing, actor)


@router.post("/listings/{listing_id}/publish", response_model=ListingDetail)
def publish(listing_id: Id, actor: ActorDep, session: SessionDep) -> ListingDetail:
    return _detail(session, service.publish(session, actor, listing_id), actor)


@router.post("/listings/{listing_id}/unpublish", response_model=ListingDetail)
def unpublish(listing_id: Id, actor: ActorDep, session: SessionDep) -> ListingDetail:
    return _detail(session, service.unpublish(session, actor, listing_id), actor)


@router.post("/listings/{listing_id}/skus", status_code=201, response_model=SkuOut)
def add_sku(listing_id: Id, body: SkuIn, actor: ActorDep, session: SessionDep) -> SkuOut:
    sku = service.add_sku(session, actor, listing_id, body)
    return SkuOut.model_validate(service.sku_out(session, sku))


@router.patch("/listings/{listing_id}/skus/{sku_id}", response_model=SkuOut)
def update_sku(
    listing_id: Id, sku_id: Id, body: SkuUpdate, actor: ActorDep, session: SessionDep
) -> SkuOut:
    sku = service.update_sku(
        session, actor, listing_id, sku_id, body.model_dump(exclude_unset=True)
    )
    return SkuOut.model_validate(service.sku_out(session, sku))


@router.post(
    "/listings/{listing_id}/stock-adjustments", status_code=201, response_model=AdjustmentResult
)
def adjust_stock(
    listing_id: Id, body: StockAdjustmentIn, actor: ActorDep, session: SessionDep
) -> AdjustmentResult:
    result = service.adjust_stock(
        session,
        actor,
        listing_id,
        delta=body.delta,
        reason=body.reason,
        sku_id=body.sku_id,
        slot_id=body.slot_id,
    )
    return AdjustmentResult.model_validate(result)


@router.get("/listings/{listing_id}/stock-adjustments", response_model=Page[AdjustmentOut])
def list_adjustments(
    listing_id: Id,
    actor: ActorDep,
    session: ReadSessionDep,
    limit: PageLimit = 50,
    cursor: IdCursor = None,
) -> Page[AdjustmentOut]:
    rows = service.list_adjustments(
        session, actor, listing_id, limit=limit, before_id=int(cursor) if cursor else None
    )
    return Page[AdjustmentOut](
        items=[AdjustmentOut.model_validate(r) for r in rows],
        next_cursor=str(rows[-1]["id"]) if len(rows) == limit else None,
    )


@router.post("/listings/{listing_id}/slots", status_code=201, response_model=list[SlotOut])
def add_slots(listing_id: Id, body: SlotsIn, actor: ActorDep, session: SessionDep) -> list[SlotOut]:
    slots = service.add_slots(session, actor, listing_id, body)
    return [SlotOut.model_validate(s) for s in service.slots_out(session, slots)]


@router.get("/listings/{listing_id}/slots", response_model=Page[SlotOut])
def list_slots(
    listing_id: Id,
    actor: OptionalActorDep,
    session: ReadSessionDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    store_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
    cursor: SlotCursor = None,
) -> Page[SlotOut]:
    after = None
    if cursor:
        micros, slot_id = cursor.split("_")
        after = (_EPOCH + int(micros) * _MICROSECOND, int(slot_id))
    rows = service.list_slots(
        session,
        actor,
        listing_id,
        start=as_utc(start) if start else None,
        end=as_utc(end) if end else None,
        store_id=store_id,
        limit=limit,
        after=after,
    )
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = f"{(last['starts_at'] - _EPOCH) // _MICROSECOND}_{last['id']}"
    return Page[SlotOut](items=[SlotOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("/listings/{listing_id}/slots/{slot_id}/close", response_model=SlotOut)
def close_slot(listing_id: Id, slot_id: Id, actor: ActorDep, session: SessionDep) -> SlotOut:
    return SlotOut.model_validate(
        service.set_slot_open(session, actor, listing_id, slot_id, is_open=False)
    )


@router.post("/listings/{listing_id}/slots/{slot_id}/reopen", response_model=SlotOut)
def reopen_slot(listing_id: Id, slot_id: Id, actor: ActorDep, session: SessionDep) -> SlotOut:
    return SlotOut.model_validate(
        service.set_slot_open(session, actor, listing_id, slot_id, is_open=True)
    )


routers = [router]
