"""图片 in the console: upload photos to a listing's gallery or a store, choose the cover,
remove one. The upload goes through ``o2o.media`` (type, bomb and size checks, renditions); a
refused file comes back as an error message on the same page and nothing is stored."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from o2o.catalog import service as catalog
from o2o.catalog.schemas import MAX_IMAGES
from o2o.errors import AppError
from o2o.media import service as media
from o2o.media.images import MAX_UPLOAD_BYTES, too_large
from o2o.media.storage import storage_for
from o2o.merchants import service as merchants
from o2o.merchants.access import MANAGERS
from o2o.schemas import Id
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import FormDataDep
from o2o.web.pages.console_listings import own_listing

router = page_router()


def _index(data: FormData, name: str) -> int | None:
    raw = data.get(name)
    return int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) < 4 else None


def _read_file(data: FormData) -> bytes | None:
    upload = data.get("photo")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    content = upload.file.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        raise too_large()
    return content


def change_photos(
    page: PageContext,
    data: FormData,
    current: list[str],
    save: Callable[[Session, list[str]], None],
) -> str:
    """Apply one action (upload / cover / remove) to ``current``; returns the flash text."""
    assert page.actor is not None and page.merchant is not None
    photos = list(current)
    cover, remove = _index(data, "cover"), _index(data, "remove")
    if cover is not None and cover < len(photos):
        photos.insert(0, photos.pop(cover))
        flash = "已设为封面"
    elif remove is not None and remove < len(photos):
        photos.pop(remove)
        flash = "图片已删除"
    else:
        content = _read_file(data)
        if content is None:
            raise AppError("请选择要上传的图片", code="image_missing", status=422)
        if len(photos) >= MAX_IMAGES:
            raise AppError(f"最多 {MAX_IMAGES} 张图片，请先删除一张", code="too_many_images")
        image = media.store_image(storage_for(page.settings), content)
        with page.write() as session:
            media.record(session, page.merchant.id, image, page.actor.user_id)
        if image.url not in photos:
            photos.append(image.url)
        flash = "图片已上传"
    with page.write() as session:
        save(session, photos)
    return flash


def _act(page: PageContext, back: str, action: Callable[[], str]) -> Response:
    try:
        flash = action()
    except AppError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        return page.redirect(back, flash=f"图片未保存：{exc.detail}", kind="error")
    return page.redirect(back, flash=flash)


@router.post("/console/m/{merchant_id}/listings/{listing_id}/photos")
def listing_photos(page: ConsolePageDep, listing_id: Id, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, MANAGERS)
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
        current = list(listing.images or [])

    def save(session: Session, photos: list[str]) -> None:
        catalog.update_listing(session, actor, listing_id, {"images": photos})

    back = f"/console/m/{merchant_id}/listings/{listing_id}/edit"
    return _act(page, back, lambda: change_photos(page, data, current, save))


@router.post("/console/m/{merchant_id}/stores/{store_id}/photos")
def store_photos(page: ConsolePageDep, store_id: Id, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, MANAGERS, store_id=store_id)
    with page.read() as session:
        current = list(merchants.get_store(session, merchant_id, store_id).photos or [])

    def save(session: Session, photos: list[str]) -> None:
        merchants.update_store(session, actor, merchant_id, store_id, photos=photos)

    back = f"/console/m/{merchant_id}/stores/{store_id}/edit"
    return _act(page, back, lambda: change_photos(page, data, current, save))
