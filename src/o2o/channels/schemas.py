from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from o2o.channels.service import CODE_PATTERN
from o2o.schemas import Name, Schema

ChannelKind = Literal["superapp_entry", "partner_site", "poster_qr", "search_ad", "other"]
ChannelCode = Annotated[
    str,
    Field(
        min_length=2,
        max_length=40,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,39}$",
        description=f"slug; stored lower-case ({CODE_PATTERN}); links carry it as ?ch=CODE",
    ),
]


class ChannelIn(Schema):
    code: ChannelCode
    name: Name
    kind: ChannelKind
    is_active: bool = True


class ChannelUpdate(Schema):
    # Left out: unchanged; null: 422 (the columns cannot be empty).
    name: Name = None
    kind: ChannelKind = None
    is_active: bool = None


class ChannelOut(Schema):
    id: int
    code: str
    name: str
    kind: ChannelKind
    kind_label: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
