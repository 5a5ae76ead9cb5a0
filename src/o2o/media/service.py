"""Uploading a merchant's photo: check and render it (outside any transaction: CPU work), store
the renditions, record it. A refused upload stores nothing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.db import Database
from o2o.media.images import WIDTHS, ProcessedImage, media_url, process
from o2o.media.models import MediaImage
from o2o.media.storage import MediaStorage
from o2o.merchants.access import MANAGERS, Actor


def store_image(storage: MediaStorage, data: bytes) -> ProcessedImage:
    """Check, render and store one image (no database); raises ImageRejected first."""
    image = process(data)
    for rendition in image.renditions:
        storage.put(rendition.name, rendition.data, rendition.content_type)
    return image


def record(
    session: Session, merchant_id: int, image: ProcessedImage, user_id: int | None
) -> MediaImage:
    found = session.scalar(
        select(MediaImage).where(MediaImage.merchant_id == merchant_id, MediaImage.key == image.key)
    )
    if found is not None:
        return found
    row = MediaImage(
        merchant_id=merchant_id,
        key=image.key,
        width=image.width,
        height=image.height,
        size_bytes=image.size_bytes,
        uploaded_by=user_id,
    )
    session.add(row)
    session.flush()
    return row


def upload(
    db: Database, storage: MediaStorage, actor: Actor, merchant_id: int, data: bytes
) -> MediaImage:
    """An owner's or manager's upload for their merchant (clerks: 403)."""
    actor.require_staff(merchant_id, MANAGERS)
    image = store_image(storage, data)
    with db.transaction() as session:
        row = record(session, merchant_id, image, actor.user_id)
        session.expunge(row)
        return row


def image_out(row: MediaImage) -> dict[str, object]:
    large, small = WIDTHS
    return {
        "id": row.id,
        "key": row.key,
        "url": media_url(row.key, large, "jpg"),
        "webp_url": media_url(row.key, large, "webp"),
        "thumb_url": media_url(row.key, small, "jpg"),
        "thumb_webp_url": media_url(row.key, small, "webp"),
        "width": row.width,
        "height": row.height,
        "size_bytes": row.size_bytes,
    }
