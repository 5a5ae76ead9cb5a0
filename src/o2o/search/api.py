"""Search routes: ``GET /api/v1/search`` and ``GET /api/v1/stores/nearby`` (public)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from o2o.deps import ReadSessionDep
from o2o.schemas import Id, Latitude, Longitude, PageLimit
from o2o.search import service, tokens
from o2o.search.schemas import NearbyPage, SearchPage


@asynccontextmanager
async def _warm_jieba(_app: Any) -> AsyncIterator[None]:
    # jieba's dictionary takes ~1 s to load: do it beside startup, not in the first search.
    tokens.warm_up_in_background()
    yield


router = APIRouter(prefix="/api/v1", tags=["search"], lifespan=_warm_jieba)

Keyword = Annotated[str | None, Query(max_length=service.MAX_QUERY_CHARS, description="关键词")]
Radius = Annotated[int | None, Query(ge=1, le=service.MAX_RADIUS_M, description="metres")]
Cursor = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")]
SortBy = Literal["relevance", "distance", "sales", "price", "rating"]


@router.get("/search", response_model=SearchPage)
def search(
    session: ReadSessionDep,
    q: Keyword = None,
    lat: Latitude | None = None,
    lng: Longitude | None = None,
    radius_m: Radius = None,
    kind: Literal["goods", "service"] | None = None,
    category_id: Id | None = None,
    sort: SortBy | None = None,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> Any:
    """Published listings: Chinese keywords (every word must match) and/or near (lat, lng)."""
    return service.search(
        session,
        q=q,
        lat=lat,
        lng=lng,
        radius_m=radius_m,
        kind=kind,
        category_id=category_id,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )


@router.get("/stores/nearby", response_model=NearbyPage)
def nearby_stores(
    session: ReadSessionDep,
    lat: Latitude,
    lng: Longitude,
    radius_m: Radius = None,
    q: Keyword = None,
    category_id: Id | None = None,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> Any:
    """Active stores of approved merchants, nearest first (default radius 3 km)."""
    return service.nearby_stores(
        session,
        lat=lat,
        lng=lng,
        radius_m=radius_m,
        q=q,
        category_id=category_id,
        limit=limit,
        cursor=cursor,
    )


routers = [router]
