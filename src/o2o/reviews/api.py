"""Routes for reviews (thin: the rules live in reviews.service)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from o2o.deps import ActorDep, OptionalActorDep, ReadSessionDep, SessionDep
from o2o.reviews import service
from o2o.reviews.models import MERCHANT
from o2o.reviews.schemas import OrderReviewsOut, RatedPage, ReplyIn, ReviewIn, ReviewOut
from o2o.schemas import Id, PageLimit
from o2o.security import require_user_id

router = APIRouter(prefix="/api/v1", tags=["reviews"])

UserIdDep = Annotated[int, Depends(require_user_id)]
OrderNo = Annotated[str, Path(min_length=1, max_length=32)]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]


def _out(session: Any, reviews: Any) -> list[ReviewOut]:
    return [ReviewOut.model_validate(r) for r in service.reviews_out(session, reviews)]


def _next(items: Any, limit: int) -> str | None:
    return str(items[-1].id) if len(items) == limit else None


@router.post("/orders/{order_no}/reviews", status_code=201, response_model=ReviewOut)
def create_review(
    order_no: OrderNo, body: ReviewIn, user_id: UserIdDep, session: SessionDep
) -> ReviewOut:
    """评价 (the order's consumer, after consumption): once per line."""
    review = service.create_review(
        session, user_id, order_no, rating=body.rating, text=body.text, line_id=body.line_id
    )
    return _out(session, [review])[0]


@router.get("/orders/{order_no}/reviews", response_model=OrderReviewsOut)
def order_reviews(
    order_no: OrderNo, user_id: UserIdDep, session: ReadSessionDep
) -> OrderReviewsOut:
    """The consumer's reviews of an order and the lines still open for review."""
    found, reviewable = service.order_reviews(session, user_id, order_no)
    return OrderReviewsOut(items=_out(session, found), reviewable_line_ids=reviewable)


@router.post("/merchants/{merchant_id}/reviews/{review_id}/reply", response_model=ReviewOut)
def reply(
    merchant_id: Id, review_id: Id, body: ReplyIn, actor: ActorDep, session: SessionDep
) -> ReviewOut:
    """商家回复 (owner, manager), once per review."""
    review = service.reply(session, actor, merchant_id, review_id, body.text)
    return _out(session, [review])[0]


@router.get("/listings/{listing_id}/reviews", response_model=RatedPage)
def listing_reviews(
    listing_id: Id,
    actor: OptionalActorDep,
    session: ReadSessionDep,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> RatedPage:
    """A listing's reviews, newest first, with its average rating (public)."""
    listing, found = service.listing_reviews(
        session, listing_id, actor, limit=limit, before_id=int(cursor) if cursor else None
    )
    return RatedPage(
        items=_out(session, found),
        next_cursor=_next(found, limit),
        rating=listing.rating,
        rating_count=listing.rating_count,
    )


@router.get("/merchants/{merchant_id}/reviews", response_model=RatedPage)
def merchant_reviews(
    merchant_id: Id,
    actor: OptionalActorDep,
    session: ReadSessionDep,
    store_id: Id | None = None,
    replied: bool | None = None,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> RatedPage:
    """A merchant's reviews (optionally of one store, or only those awaiting a reply), newest
    first, with the merchant's (or the store's) average rating (public)."""
    found = service.merchant_reviews(
        session,
        merchant_id,
        actor,
        store_id=store_id,
        replied=replied,
        limit=limit,
        before_id=int(cursor) if cursor else None,
    )
    subject = ("store", store_id) if store_id is not None else (MERCHANT, merchant_id)
    rating, count = service.rating_of(session, *subject)
    return RatedPage(
        items=_out(session, found),
        next_cursor=_next(found, limit),
        rating=rating,
        rating_count=count,
    )


routers = [router]
