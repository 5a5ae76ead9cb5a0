"""Channels (渠道/流量入口): the operator's list, visit storage and last-touch attribution.

Visits are *recorded* by ``o2o.channels.middleware`` (off the request path); this module stores
them in batches and answers "which channel brought this order?" for checkout.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from o2o.channels.models import CHANNEL_KINDS, Channel, Visit
from o2o.errors import Conflict, NotFound, ValidationFailed
from o2o.timeutil import as_utc, utcnow

CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{1,39}$"
_CODE_RE = re.compile(CODE_PATTERN)
VISITOR_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
_VISITOR_RE = re.compile(VISITOR_ID_PATTERN)
KIND_LABELS = {
    "superapp_entry": "超级App入口",
    "partner_site": "合作网站",
    "poster_qr": "海报二维码",
    "search_ad": "搜索广告",
    "other": "其他",
}


class ChannelSettings(BaseSettings):
    """This domain's ``O2O_*`` settings (kept here so config.py stays small)."""

    model_config = SettingsConfigDict(env_prefix="O2O_", extra="ignore")

    # Last-touch attribution window (days): a visit older than this no longer claims an order.
    attribution_window_days: int = Field(default=7, ge=1, le=365)
    # Bound of the in-process visit queue; beyond it visits are dropped and counted.
    visit_queue_size: int = Field(default=10_000, ge=1, le=10_000_000)
    # How often the background thread writes queued visits.
    visit_flush_seconds: float = Field(default=0.5, gt=0, le=60)


@lru_cache
def channel_settings() -> ChannelSettings:
    return ChannelSettings()


def normalize_code(code: str | None) -> str | None:
    """A channel code as links carry it (case-insensitive), or None if it cannot be one."""
    if not code or len(code) > 40:
        return None
    code = code.strip().lower()
    return code if _CODE_RE.match(code) else None


def valid_visitor_id(value: str | None) -> str | None:
    return value if value and _VISITOR_RE.match(value) else None


# --- operator CRUD -----------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in CHANNEL_KINDS:
        raise ValidationFailed("未知的渠道类型", field="kind")


def create_channel(
    session: Session, *, code: str, name: str, kind: str, is_active: bool = True
) -> Channel:
    normalized = normalize_code(code)
    if normalized is None:
        raise ValidationFailed(
            "渠道编码只能包含小写字母、数字、-、_，2–40位，以字母或数字开头", field="code"
        )
    _check_kind(kind)
    if session.scalar(select(Channel.id).where(Channel.code == normalized)) is not None:
        raise Conflict(f"渠道编码 {normalized} 已存在", code="channel_code_taken")
    channel = Channel(code=normalized, name=name, kind=kind, is_active=is_active)
    try:
        with session.begin_nested():
            session.add(channel)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"渠道编码 {normalized} 已存在", code="channel_code_taken") from exc
    return channel


def get_channel(session: Session, channel_id: int) -> Channel:
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise NotFound("渠道不存在", code="channel_not_found")
    return channel


def channel_by_code(session: Session, code: str | None) -> Channel | None:
    normalized = normalize_code(code)
    if normalized is None:
        return None
    return session.scalar(select(Channel).where(Channel.code == normalized))


def update_channel(session: Session, channel_id: int, **changes: Any) -> Channel:
    """Name, kind and is_active may change; the code may not (it is printed on posters)."""
    channel = get_channel(session, channel_id)
    if "kind" in changes:
        _check_kind(changes["kind"])
    for field in ("name", "kind", "is_active"):
        if field in changes and changes[field] is not None:
            setattr(channel, field, changes[field])
    channel.updated_at = utcnow()
    session.flush()
    return channel


def list_channels(
    session: Session,
    *,
    kind: str | None = None,
    is_active: bool | None = None,
    limit: int = 50,
    after_id: int | None = None,
) -> Sequence[Channel]:
    query = select(Channel).order_by(Channel.id).limit(limit)
    if kind:
        query = query.where(Channel.kind == kind)
    if is_active is not None:
        query = query.where(Channel.is_active == is_active)
    if after_id:
        query = query.where(Channel.id > after_id)
    return session.scalars(query).all()


def active_channel_ids(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Channel.code, Channel.id).where(Channel.is_active)).all())


# --- visits ------------------------------------------------------------------------------------


class Touch(NamedTuple):
    """A visit as the middleware saw it (code not yet resolved to a channel)."""

    code: str
    visitor_id: str
    path: str
    user_id: int | None
    at: datetime


def store_visits(session: Session, touches: Iterable[Touch], channel_ids: dict[str, int]) -> int:
    """Insert visits of known, active channels in one statement; returns how many were stored."""
    rows = [
        {
            "channel_id": channel_ids[t.code],
            "visitor_id": t.visitor_id,
            "path": t.path[:300],
            "user_id": t.user_id,
            "created_at": t.at,
        }
        for t in touches
        if t.code in channel_ids
    ]
    if rows:
        session.execute(insert(Visit), rows)
    return len(rows)


def link_visitor(session: Session, visitor_id: str, user_id: int) -> int:
    """Give a visitor's anonymous visits to the user who just signed in; returns how many."""
    if valid_visitor_id(visitor_id) is None:
        return 0
    result = session.execute(
        update(Visit)
        .where(Visit.visitor_id == visitor_id, Visit.user_id.is_(None))
        .values(user_id=user_id)
    )
    return result.rowcount or 0


# --- attribution -------------------------------------------------------------------------------


def _last_touch(by_visitor: bool, by_user: bool) -> Any:
    visits, channels = Visit.__table__.c, Channel.__table__.c
    who = []
    if by_visitor:
        who.append(visits.visitor_id == bindparam("visitor_id"))
    if by_user:
        who.append(visits.user_id == bindparam("user_id"))
    return (
        select(channels.code, visits.created_at)
        .join_from(Visit.__table__, Channel.__table__, channels.id == visits.channel_id)
        .where(
            or_(*who),
            visits.created_at > bindparam("since"),
            visits.created_at <= bindparam("until"),
        )
        .order_by(visits.created_at.desc(), visits.id.desc())
        .limit(1)
    )


# The last-touch query per (by visitor id, by user), built once.
_LAST_TOUCH = {
    (by_visitor, by_user): _last_touch(by_visitor, by_user)
    for by_visitor in (True, False)
    for by_user in (True, False)
    if by_visitor or by_user
}


def attribute(
    session: Session,
    visitor_id: str | None,
    user_id: int | None,
    now: datetime | None = None,
    window_days: int | None = None,
    *,
    channel: str | None = None,
) -> str | None:
    """The channel code an order placed now is attributed to, or None.

    Rules: an explicit ``channel`` (checkout's ``channel`` field) wins when it names an existing
    channel; otherwise the **last touch** — the latest visit by this visitor id *or* this user
    within ``window_days`` before ``now`` (default ``O2O_ATTRIBUTION_WINDOW_DAYS``, 7). Visits
    still waiting in this process's queue count too, so a checkout right after landing is not
    missed. Unknown codes are ignored, never an error. Read-only; call it inside checkout's
    transaction: ``channel_code = attribute(session, visitor_id, actor.user_id, channel=body.channel)``
    with ``visitor_id = o2o.channels.middleware.visitor_id(request)``.
    """
    if channel is not None:
        explicit = channel_by_code(session, channel)
        if explicit is not None and explicit.is_active:
            return explicit.code
    visitor_id = valid_visitor_id(visitor_id)
    if visitor_id is None and user_id is None:
        return None
    now = as_utc(now or utcnow())
    window = timedelta(days=window_days or channel_settings().attribution_window_days)
    since = now - window
    # Core on the session's connection: this runs inside every checkout (the hot path). Core
    # does not autoflush, so flush first (free when nothing is pending).
    session.flush()
    row = (
        session.connection()
        .execute(
            _LAST_TOUCH[(visitor_id is not None, user_id is not None)],
            {"visitor_id": visitor_id, "user_id": user_id, "since": since, "until": now},
        )
        .first()
    )
    best: tuple[str, datetime] | None = (row[0], as_utc(row[1])) if row else None
    from o2o.channels.middleware import pending_touches  # the queue lives with the middleware

    for touch in pending_touches(session, visitor_id, user_id, since, now):
        if best is not None and touch.at < best[1]:
            break
        known = channel_by_code(session, touch.code)
        if known is not None and known.is_active:
            return known.code
    return best[0] if best else None
