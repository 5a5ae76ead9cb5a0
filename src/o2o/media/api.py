"""Photo upload (owners and managers) and the files themselves (public, cached for a year:
a name is a hash of the content, so it never changes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from o2o.deps import ActorDep, DbDep
from o2o.errors import NotFound
from o2o.media import service
from o2o.media.images import CONTENT_TYPES, MAX_UPLOAD_BYTES, NAME_RE, too_large
from o2o.media.storage import storage_for
from o2o.merchants.access import MANAGERS
from o2o.schemas import Id

router = APIRouter(tags=["media"])

CACHE_FOREVER = "public, max-age=31536000, immutable"
# Multipart framing around the file: a request longer than this is refused before it is read.
MULTIPART_SLACK = 64 * 1024


async def read_upload(file: UploadFile, content_length: int | None) -> bytes:
    """The uploaded bytes, never more than the limit (413 past it, without reading it all)."""
    if content_length is not None and content_length > MAX_UPLOAD_BYTES + MULTIPART_SLACK:
        raise too_large()
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise too_large()
    return data


@router.post("/api/v1/merchants/{merchant_id}/media", status_code=201)
async def upload_image(
    merchant_id: Id,
    request: Request,
    actor: ActorDep,
    db: DbDep,
    file: Annotated[UploadFile, File(description="JPEG, PNG or WebP, ≤ 10 MB")],
    content_length: Annotated[int | None, Header()] = None,
) -> dict[str, Any]:
    """上传图片: returns the URLs to put in a listing's ``images`` or a store's ``photos``."""
    actor.require_staff(merchant_id, MANAGERS)
    data = await read_upload(file, content_length)
    storage = storage_for(request.app.state.settings)
    row = await run_in_threadpool(service.upload, db, storage, actor, merchant_id, data)
    return service.image_out(row)


@router.get("/media/{name}", include_in_schema=False)
def media_file(
    name: str, request: Request, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    match = NAME_RE.match(name)
    if match is None:
        raise NotFound("图片不存在", code="media_not_found")
    etag = f'"{name}"'
    headers = {"Cache-Control": CACHE_FOREVER, "ETag": etag}
    storage = storage_for(request.app.state.settings)
    if if_none_match == etag and storage.exists(name):
        return Response(status_code=304, headers=headers)
    data = storage.get(name)
    if data is None:
        raise NotFound("图片不存在", code="media_not_found")
    return Response(data, media_type=CONTENT_TYPES[match.group("ext")], headers=headers)


routers = [router]
