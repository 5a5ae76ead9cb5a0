"""Pictures for the demo data, drawn here with Pillow (so they are ours to redistribute): a cover
for every demo listing and a storefront for every demo store, stored like any upload.

Drawing needs somewhere to put files, so this is not one of the session-only demo steps:
``o2o.demo.load(db, settings)`` calls it when it is told the settings (``o2o serve``, ``o2o
demo``). Idempotent: listings and stores that have pictures are left alone.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from o2o.catalog.models import Listing
from o2o.db import Database
from o2o.media import service
from o2o.media.storage import MediaStorage
from o2o.merchants.models import Merchant, Store

SIZE = (800, 600)
# A CJK font when the system has one (Debian: fonts-wqy-microhei / fonts-noto-cjk); without
# one the pictures are drawn without their caption.
FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
PALETTES = [
    ((214, 69, 65), (247, 178, 103)),
    ((46, 134, 171), (162, 213, 198)),
    ((94, 84, 142), (224, 177, 203)),
    ((35, 120, 88), (196, 223, 170)),
    ((191, 98, 41), (255, 223, 143)),
    ((62, 72, 92), (150, 170, 200)),
]


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | None:
    for path in FONT_PATHS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return None


def draw(caption: str, subtitle: str, *, storefront: bool = False) -> bytes:
    """A JPEG: a two-colour gradient, a few shapes chosen by the caption, the caption."""
    digest = hashlib.sha256(caption.encode()).digest()
    top, bottom = PALETTES[digest[0] % len(PALETTES)]
    w, h = SIZE
    image = Image.new("RGB", SIZE)
    pen = ImageDraw.Draw(image)
    for y in range(h):
        t = y / (h - 1)
        pen.line(
            [(0, y), (w, y)],
            fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    overlay = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    shapes = ImageDraw.Draw(overlay)
    if storefront:  # an awning and a door
        stripe = w // 10
        for i in range(10):
            colour = (255, 255, 255, 150) if i % 2 else (*top, 200)
            shapes.rectangle([i * stripe, 40, (i + 1) * stripe, 140], fill=colour)
        shapes.rectangle([w // 2 - 80, 300, w // 2 + 80, h], fill=(40, 40, 40, 140))
        shapes.rectangle([60, 300, w // 2 - 130, 480], fill=(255, 255, 255, 90))
        shapes.rectangle([w // 2 + 130, 300, w - 60, 480], fill=(255, 255, 255, 90))
    else:  # plates or circles
        for i in range(3 + digest[1] % 3):
            x = 120 + (digest[2 + i] * 7) % (w - 240)
            y = 160 + (digest[6 + i] * 5) % (h - 320)
            r = 60 + digest[10 + i] % 90
            shapes.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255, 70))
            shapes.ellipse([x - r // 2, y - r // 2, x + r // 2, y + r // 2], fill=(*bottom, 160))
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    pen = ImageDraw.Draw(image)
    title_font, small_font = _font(54), _font(30)
    if title_font is not None and small_font is not None:
        pen.rectangle([0, h - 170, w, h], fill=(0, 0, 0))
        pen.text((40, h - 150), caption[:14], font=title_font, fill=(255, 255, 255))
        pen.text((40, h - 70), subtitle[:24], font=small_font, fill=(230, 230, 230))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def load_images(db: Database, storage: MediaStorage) -> int:
    """Covers for demo listings and photos for demo stores that have none."""
    from o2o.demo import MERCHANTS

    names = [m.name for m in MERCHANTS]
    done = 0
    with db.transaction() as session:
        merchants = {
            m.id: m for m in session.scalars(select(Merchant).where(Merchant.name.in_(names)))
        }
        listings = session.scalars(
            select(Listing).where(Listing.merchant_id.in_(list(merchants))).order_by(Listing.id)
        ).all()
        for listing in listings:
            if listing.images:
                continue
            merchant = merchants[listing.merchant_id]
            image = service.store_image(storage, draw(listing.title, merchant.name))
            service.record(session, merchant.id, image, None)
            listing.images = [image.url]
            done += 1
        stores = session.scalars(
            select(Store).where(Store.merchant_id.in_(list(merchants))).order_by(Store.id)
        ).all()
        for store in stores:
            if store.photos:
                continue
            merchant = merchants[store.merchant_id]
            image = service.store_image(storage, draw(merchant.name, store.name, storefront=True))
            service.record(session, merchant.id, image, None)
            store.photos = [image.url]
            done += 1
    return done
