"""Photos in the console and on the consumer's pages: a manager uploads photos to a deal and a
store, picks the cover, removes one; a renamed PDF comes back as an error and stores nothing; the
listing page shows the gallery (WebP + JPEG, lazy) and search results the cover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from o2o.accounts.models import User
from o2o.catalog import service as catalog
from o2o.catalog.models import Listing
from o2o.merchants.access import load_actor
from o2o.merchants.models import Store
from tests import media_support as pics
from tests.web.support import TOKEN, PageClient
from tests.web.test_console_listings import created_id, deal_form


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def upload(pages: PageClient, url: str, name: str, data: bytes) -> Any:
    return pages.post(url, data={"csrf_token": TOKEN}, files={"photo": (name, data)})


def test_photos_of_a_deal_and_a_store(pages: PageClient, world: Any, tmp_path: Path) -> None:
    base = f"/console/m/{world.a.id}/listings"
    pages.sign_in(world.a.owner_id)
    listing_id = created_id(pages.form_post(f"{base}/new/deal", deal_form(world)))
    photos = f"{base}/{listing_id}/photos"
    assert upload(pages, photos, "a.jpg", pics.jpeg_with_gps()).status_code == 303
    assert upload(pages, photos, "b.png", pics.png(400, 300)).status_code == 303
    bad = upload(pages, photos, "menu.jpg", pics.pdf_named_jpg())
    assert bad.status_code == 303
    page = pages.get(bad.headers["location"]).text
    assert "图片未保存：文件不是可识别的图片" in page
    assert len([p for p in (tmp_path / "media").rglob("*") if p.is_file()]) == 8
    with world.db.transaction(readonly=True) as session:
        first, second = session.get(Listing, listing_id).images
    assert pages.form_post(photos, {"cover": "1"}).status_code == 303
    with world.db.transaction(readonly=True) as session:
        assert session.get(Listing, listing_id).images == [second, first]
    edit = pages.get(f"{base}/{listing_id}/edit").text
    assert 'enctype="multipart/form-data"' in edit and "设为封面" in edit

    # The consumer: the gallery on the listing page, the cover in search results.
    with world.db.transaction() as session:
        owner = load_actor(session, session.get(User, world.a.owner_id))
        catalog.publish(session, owner, listing_id)
    pages.sign_in(None)
    shown = pages.get(f"/l/{listing_id}").text
    key = second.split("/")[-1].split("-")[0]
    assert f'type="image/webp" srcset="/media/{key}-480.webp 480w' in shown
    assert 'loading="eager"' in shown and 'loading="lazy"' in shown
    results = pages.get("/search", params={"q": "火锅"}).text
    assert f"/media/{key}-480.jpg" in results

    # A store's photos; the clerk of another store cannot touch them.
    store_url = f"/console/m/{world.a.id}/stores/{world.a.store_ids[0]}/photos"
    pages.sign_in(world.a.manager_id)
    assert upload(pages, store_url, "front.jpg", pics.jpeg_with_gps()).status_code == 303
    assert pages.form_post(photos, {"remove": "0"}).status_code == 303
    with world.db.transaction(readonly=True) as session:
        assert session.get(Store, world.a.store_ids[0]).photos == [first]
        assert session.get(Listing, listing_id).images == [first]
    pages.sign_in(world.a.clerk_id)
    assert upload(pages, store_url, "x.png", pics.png()).status_code == 403
    pages.sign_in(world.b.owner_id)
    assert upload(pages, photos, "x.png", pics.png()).status_code in (403, 404)
