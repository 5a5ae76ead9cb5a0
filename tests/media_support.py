"""Images for tests, made on the spot: photos with EXIF, and the uploads that must be refused."""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

from PIL import Image


def jpeg_with_gps(width: int = 800, height: int = 600) -> bytes:
    """A JPEG whose EXIF says where it was taken (and that it is rotated)."""
    image = Image.new("RGB", (width, height), (200, 60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to show
    exif[0x8825] = {1: "N", 2: (22.0, 31.0, 0.0), 3: "E", 4: (113.0, 56.0, 0.0)}  # GPS
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=80)
    return out.getvalue()


def png(width: int = 300, height: int = 200, alpha: bool = False) -> bytes:
    image = Image.new("RGBA" if alpha else "RGB", (width, height), (30, 120, 200, 128))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=1)
def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side × side pixels: ~50 kB on disk, 400 million pixels decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def pdf_named_jpg() -> bytes:
    """What a 'photo.jpg' that is really a PDF contains."""
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
