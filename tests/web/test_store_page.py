"""The store page and store hours in the console: a manager types the week's hours (an
overnight range, a holiday) and the summary follows; the consumer's store page shows photos,
hours, 营业中/已打烊, tap-to-call, a geo: link, the deals usable there and reviews; the listing
and the voucher link to it; a closed store of another kind is not shown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from o2o.merchants.models import Store
from tests.support import World
from tests.voucher_support import paid_order
from tests.web.support import PageClient, field_error
from tests.web.test_consumer_pages import indexed_deal


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def store_form(**fields: Any) -> dict[str, Any]:
    week = {}
    for day in range(1, 8):
        week[f"h{day}_s1"], week[f"h{day}_e1"] = "00:00", "24:00"
    return {
        "name": "甲火锅0号店",
        "city": "深圳市",
        "district": "南山区",
        "address": "深南大道1号",
        "lat": "22.53",
        "lng": "113.93",
        "phone": "0755-86001234",
        "is_active": "1",
        "hours_form": "1",
        **week,
        **fields,
    }


def test_store_hours_form_and_store_page(pages: PageClient, world: World) -> None:
    store_id = world.a.store_ids[0]
    edit = f"/console/m/{world.a.id}/stores/{store_id}/edit"
    pages.sign_in(world.a.manager_id)
    r = pages.form_post(edit, store_form(h3_e1=""))
    assert r.status_code == 422
    assert field_error(r.text, "hours") == "每个时段请同时填写开始和结束时间"
    r = pages.form_post(edit, store_form(closed_dates="春节"))
    assert field_error(r.text, "hours") == "「春节」不是日期，请写成 2026-10-01"
    r = pages.form_post(edit, store_form(h5_s1="18:00", h5_e1="02:00", closed_dates="2027-02-17"))
    assert r.status_code == 303, r.text
    with world.db.transaction(readonly=True) as session:
        store = session.get(Store, store_id)
        assert store.hours["weekly"][4] == [{"start": "18:00", "end": "02:00"}]
        assert store.hours["closed_dates"] == ["2027-02-17"]
        assert "周五 18:00–次日02:00" in store.opening_hours
    shown = pages.get(edit).text
    assert 'value="18:00"' in shown and "2027-02-17" in shown
    # Without the weekly table (an old form), the hours stay as they are.
    assert pages.form_post(edit, {**store_form(), "hours_form": ""}).status_code == 303
    with world.db.transaction(readonly=True) as session:
        assert session.get(Store, store_id).hours is not None
    # Round the clock every day: open now, whatever the hour the test runs (both stores, so
    # whichever is nearest in search results says so).
    assert pages.form_post(edit, store_form()).status_code == 303
    other = f"/console/m/{world.a.id}/stores/{world.a.store_ids[1]}/edit"
    assert pages.form_post(other, store_form(name="甲火锅1号店")).status_code == 303

    listing_id = indexed_deal(world)
    bought = paid_order(world.db, world.consumer_id, listing_id)
    pages.sign_in(world.consumer_id)
    page = pages.get(f"/stores/{store_id}").text
    assert "营业中" in page and "每天 00:00–24:00" in page
    assert 'href="tel:0755-86001234"' in page
    assert 'href="geo:22.530000,113.930000?q=22.530000,113.930000(' in page
    assert f'href="/l/{listing_id}"' in page  # its deals
    listing = pages.get(f"/l/{listing_id}").text
    assert f'href="/stores/{store_id}"' in listing and "营业中" in listing
    order = pages.get(f"/orders/{bought.order_no}").text
    assert f'href="/stores/{store_id}"' in order
    results = pages.get("/search", params={"q": "火锅"}).text  # near 南山 (the default place)
    assert 'data-testid="open-state">营业中<' in results

    # A closed store is not public; a store that does not exist is 404.
    with world.db.transaction() as session:
        session.get(Store, store_id).is_active = False
    assert pages.get(f"/stores/{store_id}").status_code == 404
    assert pages.get("/stores/999999").status_code == 404
