"""Uploaded photos, made safe and web-sized with Pillow.

An upload is judged by its bytes, never its file name: Pillow must recognise it as JPEG, PNG or
WebP. Its size in pixels is checked from the header *before* the pixels are decoded, so a small
file that unpacks into gigabytes (a decompression bomb) is refused without being decoded. What
is kept are re-encoded renditions only (the original and its EXIF, which may hold the GPS position
of the merchant's home, are dropped): 1080 px and 480 px wide, each as WebP and as a JPEG fallback,
named by the SHA-256 of the uploaded bytes (the same photo uploaded twice is stored once).
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from o2o.errors import AppError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # e.g. 8000 × 5000: more than any phone camera takes
MAX_SIDE = 12_000
MIN_SIDE = 64
FORMATS = ("JPEG", "PNG", "WEBP")
# Rendition widths: 1080 for the gallery (a 390 px phone at 3×), 480 for cards and thumbnails.
WIDTHS = (1080, 480)
KEY_LENGTH = 40
# Stored names: <key>-<width>.<webp|jpg>
NAME_RE = re.compile(r"^(?P<key>[0-9a-f]{40})-(?P<width>1080|480)\.(?P<ext>webp|jpg)$")
CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg"}


class ImageRejected(AppError):
    status, code, title = 422, "image_rejected", "图片不可用"


@dataclass(frozen=True)
class Rendition:
    name: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class ProcessedImage:
    key: str
    width: int
    height: int
    size_bytes: int
    renditions: list[Rendition]

    @property
    def url(self) -> str:
        """The reference stored on a listing or store: the large JPEG (every browser shows it)."""
        return media_url(self.key, WIDTHS[0], "jpg")


def media_url(key: str, width: int, ext: str) -> str:
    return f"/media/{key}-{width}.{ext}"


def too_large() -> ImageRejected:
    return ImageRejected(
        f"图片不能超过 {MAX_UPLOAD_BYTES // (1024 * 1024)} MB，请压缩后再上传",
        code="image_too_large",
        status=413,
    )


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past twice its limit raises) on huge images; we decide ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise _bomb() from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageRejected(
            "文件不是可识别的图片，仅支持 JPEG、PNG、WebP 格式",
            code="image_type_not_supported",
            status=415,
        ) from exc


def _bomb() -> ImageRejected:
    return ImageRejected(
        f"图片尺寸过大（超过 {MAX_PIXELS // 1_000_000} 百万像素），请缩小后再上传",
        code="image_too_many_pixels",
    )


def _flatten(image: Image.Image) -> Image.Image:
    """RGB over white (JPEG has no transparency)."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba, mask=rgba.getchannel("A"))
    return white


def process(data: bytes) -> ProcessedImage:
    """Check an upload and make its renditions; raises ImageRejected (4xx) for anything else."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise too_large()
    if not data:
        raise ImageRejected("文件为空", code="image_empty")
    image = _open(data)
    width, height = image.size
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise _bomb()
    if min(width, height) < MIN_SIDE:
        raise ImageRejected(f"图片太小（至少 {MIN_SIDE}×{MIN_SIDE} 像素）", code="image_too_small")
    try:
        image.load()
        # Turn the pixels the way the camera meant, then keep nothing but the pixels.
        upright = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected("图片已损坏，无法读取", code="image_corrupt") from exc
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    pixels = upright.convert("RGBA" if has_alpha else "RGB")
    pixels.info = {}
    key = hashlib.sha256(data).hexdigest()[:KEY_LENGTH]
    renditions: list[Rendition] = []
    for target in WIDTHS:
        copy = pixels.copy()
        # Bounded by width (the pages are a column); very tall images by 3× the width.
        copy.thumbnail((target, target * 3), Image.Resampling.LANCZOS)
        webp = io.BytesIO()
        copy.save(webp, "WEBP", quality=80, method=2)  # 2: half the time of 4, ~5% larger
        jpeg = io.BytesIO()
        _flatten(copy).save(jpeg, "JPEG", quality=82, optimize=True, progressive=True)
        renditions.append(Rendition(f"{key}-{target}.webp", webp.getvalue(), "image/webp"))
        renditions.append(Rendition(f"{key}-{target}.jpg", jpeg.getvalue(), "image/jpeg"))
    w, h = upright.size
    return ProcessedImage(key, w, h, len(data), renditions)


def parse_media_url(url: str) -> str | None:
    """The key of one of our stored images (``/media/<key>-1080.jpg``), else None."""
    match = re.fullmatch(r"/media/([0-9a-f]{40})-(?:1080|480)\.(?:webp|jpg)", url or "")
    return match.group(1) if match else None
