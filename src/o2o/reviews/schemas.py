"""API shapes for reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, Strict

from o2o.reviews.service import MAX_REPLY, MAX_TEXT
from o2o.schemas import Id, Page, Schema, Text

Stars = Annotated[int, Strict(), Field(ge=1, le=5, description="1–5 stars")]


class ReviewIn(Schema):
    rating: Stars
    text: Annotated[str, Field(max_length=MAX_TEXT), Text] = ""
    line_id: Id | None = Field(default=None, description="the line reviewed; needed if several")


class ReplyIn(Schema):
    text: Annotated[str, Field(min_length=1, max_length=MAX_REPLY), Text]


class ReviewOut(Schema):
    id: int
    listing_id: int
    merchant_id: int
    line_id: int
    title: str
    sku_name: str
    store_id: int | None
    store_name: str | None
    consumer_name: str
    rating: int
    text: str
    reply: str | None
    replied_at: datetime | None
    created_at: datetime


class RatedPage(Page[ReviewOut]):
    """A page of reviews with the subject's average rating and number of reviews."""

    rating: float | None
    rating_count: int


class OrderReviewsOut(Schema):
    items: list[ReviewOut]
    reviewable_line_ids: list[int]
