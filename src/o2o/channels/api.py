from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from o2o.channels import service
from o2o.channels.models import Channel
from o2o.channels.schemas import ChannelIn, ChannelKind, ChannelOut, ChannelUpdate
from o2o.deps import AdminDep, ReadSessionDep, SessionDep
from o2o.schemas import Id, Page, PageLimit

admin_router = APIRouter(prefix="/api/v1/admin/channels", tags=["admin", "channels"])


def _out(channel: Channel) -> ChannelOut:
    return ChannelOut(
        id=channel.id,
        code=channel.code,
        name=channel.name,
        kind=channel.kind,  # type: ignore[arg-type]
        kind_label=service.KIND_LABELS[channel.kind],
        is_active=channel.is_active,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


@admin_router.post("", status_code=201, response_model=ChannelOut)
def create_channel(body: ChannelIn, _admin: AdminDep, session: SessionDep) -> ChannelOut:
    return _out(service.create_channel(session, **body.model_dump()))


@admin_router.get("", response_model=Page[ChannelOut])
def list_channels(
    _admin: AdminDep,
    session: ReadSessionDep,
    kind: ChannelKind | None = None,
    is_active: bool | None = None,
    limit: PageLimit = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> Page[ChannelOut]:
    items = service.list_channels(
        session,
        kind=kind,
        is_active=is_active,
        limit=limit,
        after_id=int(cursor) if cursor else None,
    )
    return Page[ChannelOut](
        items=[_out(c) for c in items],
        next_cursor=str(items[-1].id) if len(items) == limit else None,
    )


@admin_router.patch("/{channel_id}", response_model=ChannelOut)
def update_channel(
    channel_id: Id, body: ChannelUpdate, _admin: AdminDep, session: SessionDep
) -> ChannelOut:
    return _out(service.update_channel(session, channel_id, **body.model_dump(exclude_unset=True)))


routers = [admin_router]
