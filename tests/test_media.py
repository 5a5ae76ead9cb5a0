"""Uploaded photos: the real type is checked, bombs and oversized files are refused with a clear
Chinese problem+json and nothing stored, EXIF is gone, renditions are served with long caching."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from o2o.media import images
from o2o.media.images import ImageRejected, process
from tests import media_support as pics


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --- unit: what Pillow is asked to accept -------------------------------------------------------


def test_a_photo_loses_its_exif_is_turned_upright_and_gets_four_renditions() -> None:
    result = process(pics.jpeg_with_gps(800, 600))
    names = sorted(r.name for r in result.renditions)
    assert names == sorted(
        f"{result.key}-{w}.{ext}" for w in (1080, 480) for ext in ("webp", "jpg")
    )
    assert (result.width, result.height) == (600, 800)  # the EXIF orientation was applied
    for rendition in result.renditions:
        shown = Image.open(io.BytesIO(rendition.data))
        assert shown.format == ("WEBP" if rendition.name.endswith("webp") else "JPEG")
        assert not shown.getexif(), "EXIF (GPS) must not survive"
        assert "exif" not in shown.info
        assert shown.width <= int(rendition.name.split("-")[1].split(".")[0])
    # Content-addressed: the same bytes give the same names.
    assert process(pics.jpeg_with_gps(800, 600)).key == result.key


def test_a_transparent_png_becomes_a_jpeg_over_white_and_a_webp_with_alpha() -> None:
    result = process(pics.png(300, 200, alpha=True))
    by_ext = {r.name.rsplit(".", 1)[1]: r for r in result.renditions if "-480." in r.name}
    assert Image.open(io.BytesIO(by_ext["jpg"].data)).mode == "RGB"
    assert Image.open(io.BytesIO(by_ext["webp"].data)).mode == "RGBA"


@pytest.mark.parametrize(
    ("data", "code", "status", "words"),
    [
        (pics.pdf_named_jpg(), "image_type_not_supported", 415, "仅支持 JPEG、PNG、WebP"),
        (pics.png_bomb(), "image_too_many_pixels", 422, "图片尺寸过大"),
        (b"\xff\xd8\xff" + b"\0" * images.MAX_UPLOAD_BYTES, "image_too_large", 413, "不能超过"),
        (b"", "image_empty", 422, "文件为空"),
        (pics.png(20, 20), "image_too_small", 422, "图片太小"),
        (pics.png()[:120], "image_corrupt", 422, "损坏"),
    ],
    ids=["renamed-pdf", "bomb-20000x20000", "over-10MB", "empty", "tiny", "truncated"],
)
def test_bad_uploads_are_refused_with_a_reason(
    data: bytes, code: str, status: int, words: str
) -> None:
    with pytest.raises(ImageRejected) as caught:
        process(data)
    assert (caught.value.code, caught.value.status) == (code, status)
    assert words in caught.value.detail


# --- API ---------------------------------------------------------------------------------------


def test_owner_uploads_a_photo_and_it_is_served_cached(
    api: Any, world: Any, tmp_path: Path
) -> None:
    url = f"/api/v1/merchants/{world.a.id}/media"
    r = api.post(
        url,
        as_=world.token("owner"),
        files={"file": ("shop.png", pics.jpeg_with_gps(), "image/png")},  # the name lies: fine
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["url"] == f"/media/{body['key']}-1080.jpg"
    assert (body["width"], body["height"]) == (600, 800)
    served = api.get(body["thumb_webp_url"])
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/webp"
    assert "immutable" in served.headers["cache-control"]
    assert "max-age=31536000" in served.headers["cache-control"]
    again = api.get(body["thumb_webp_url"], headers={"If-None-Match": served.headers["etag"]})
    assert again.status_code == 304
    assert len(_files(tmp_path / "media")) == 4
    # The same photo again: the same image, nothing new stored.
    r2 = api.post(url, as_=world.token("manager"), files={"file": ("a.jpg", pics.jpeg_with_gps())})
    assert r2.status_code == 201 and r2.json()["id"] == body["id"]
    assert len(_files(tmp_path / "media")) == 4
    assert api.get("/media/../../etc/passwd").status_code == 404
    assert api.get("/media/" + "0" * 40 + "-480.jpg").status_code == 404


def test_bad_uploads_get_problem_json_and_store_nothing(
    api: Any, world: Any, tmp_path: Path
) -> None:
    url = f"/api/v1/merchants/{world.a.id}/media"
    owner = world.token("owner")
    cases = [
        ("menu.jpg", pics.pdf_named_jpg(), 415, "image_type_not_supported"),
        ("big.png", pics.png_bomb(), 422, "image_too_many_pixels"),
        ("huge.jpg", b"\xff\xd8\xff" + b"\0" * (30 * 1024 * 1024), 413, "image_too_large"),
    ]
    for name, data, status, code in cases:
        r = api.post(url, as_=owner, files={"file": (name, data, "image/jpeg")})
        assert r.status_code == status, (name, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r.json()["detail"])  # said in Chinese
    assert _files(tmp_path / "media") == []


@pytest.mark.parametrize("role", ["clerk", "other_owner", "consumer", None])
def test_only_the_merchants_owners_and_managers_upload(
    api: Any, world: Any, tmp_path: Path, role: str | None
) -> None:
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/media",
        as_=world.token(role) if role else None,
        files={"file": ("a.png", pics.png())},
    )
    assert r.status_code == (401 if role is None else 403), r.text
    assert _files(tmp_path / "media") == []
