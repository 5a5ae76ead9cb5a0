"""核销 page (console_redeem) without a browser, on SQLite and PostgreSQL: the clerk's stores,
CSRF, every refusal in Chinese with nothing changed, one redemption only, the dashboard card."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from o2o.fulfilment.vouchers import format_code
from tests.voucher_support import (
    a_deal,
    a_slot_deal,
    ago,
    buy,
    deal_item,
    later,
    move_slot,
    paid_order,
    set_vouchers,
    statuses,
)
from tests.web.support import PageClient


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def url(world: Any) -> str:
    return f"/console/m/{world.a.id}/redeem"


def one_code(world: Any, *, stores: list[int] | None = None) -> str:
    deal = a_deal(world, stores=stores)
    return paid_order(world.db, world.consumer_id, deal.listing_id).codes[0]


def refusal(text: str) -> str | None:
    match = re.search(
        r'data-refusal="([a-z_]+)"[^>]*>\s*<strong>无法核销</strong><br>([^<]*)<', text
    )
    return f"{match.group(1)}: {html.unescape(match.group(2)).strip()}" if match else None


def look(pages: PageClient, world: Any, code: str, store: int | None = None) -> Any:
    store_id = world.a.store_ids[0] if store is None else store
    return pages.get(url(world), params={"code": code, "store_id": str(store_id)})


def confirm(pages: PageClient, world: Any, code: str, store: int | None = None, **kw: Any) -> Any:
    store_id = world.a.store_ids[0] if store is None else store
    return pages.form_post(url(world), {"code": code, "store_id": str(store_id)}, **kw)


def test_access_follows_the_api(pages: PageClient, world: Any) -> None:
    assert pages.sign_in(None).get(url(world)).status_code == 303
    assert pages.sign_in(world.consumer_id).get(url(world)).status_code in (403, 404)
    assert pages.sign_in(world.b.manager_id).get(url(world)).status_code in (403, 404)
    for user in (world.a.clerk_id, world.a.manager_id, world.a.owner_id):
        assert pages.sign_in(user).get(url(world)).status_code == 200


def test_clerk_sees_preview_redeems_once_and_the_second_try_says_when(
    pages: PageClient, world: Any
) -> None:
    code = one_code(world)
    pages.sign_in(world.a.clerk_id)
    page = pages.get(url(world)).text
    # A clerk is offered only its own store.
    assert f'value="{world.a.store_ids[0]}"' in page
    assert f'value="{world.a.store_ids[1]}"' not in page

    spaced = format_code(code)  # "3871 2049 5521": typed with spaces
    r = look(pages, world, spaced)
    assert r.status_code == 200
    assert 'data-testid="voucher-preview"' in r.text and "双人套餐" in r.text
    phone = world.phones["consumer"]
    assert f"{phone[:3]}****{phone[-4:]}" in r.text and phone not in r.text
    assert "未使用" in r.text and "确认核销" in r.text and refusal(r.text) is None

    r = confirm(pages, world, spaced)
    assert r.status_code == 303, r.text
    assert statuses(world.db, [code]) == ["redeemed"]
    done = pages.get(r.headers["location"]).text
    assert "核销成功" in done and "双人套餐" in done

    again = confirm(pages, world, code)
    assert again.status_code == 409
    reason = refusal(again.text)
    assert reason and reason.startswith("voucher_already_redeemed: 该券码已于 ")
    assert "核销" in reason and "店" in reason
    shown = look(pages, world, code)
    assert "确认核销" not in shown.text
    assert (refusal(shown.text) or "").startswith("voucher_already_redeemed: 该券码已于 ")
    assert "已核销" in shown.text


def test_clerk_cannot_redeem_at_another_store(pages: PageClient, world: Any) -> None:
    code = one_code(world)  # usable at both stores
    pages.sign_in(world.a.clerk_id)
    r = confirm(pages, world, code, store=world.a.store_ids[1])
    assert r.status_code == 403
    assert refusal(r.text) == "store_not_allowed: 您不能在该门店核销，请选择您所在的门店"
    assert statuses(world.db, [code]) == ["unused"]

    # A deal only sold for store 2: the clerk of store 1 is told so (preview and confirm).
    elsewhere = one_code(world, stores=[world.a.store_ids[1]])
    assert refusal(look(pages, world, elsewhere).text) == (
        "store_not_valid_for_voucher: 该券不能在本店使用"
    )
    r = confirm(pages, world, elsewhere)
    assert refusal(r.text) == "store_not_valid_for_voucher: 该券不能在本店使用"
    assert statuses(world.db, [elsewhere]) == ["unused"]

    # A manager previewing it for store 1 gets the same sentence and no confirm button.
    pages.sign_in(world.a.manager_id)
    shown = look(pages, world, elsewhere)
    assert refusal(shown.text) == "store_not_valid_for_voucher: 该券不能在本店使用"
    assert "确认核销" not in shown.text


def test_redeem_post_needs_the_csrf_token(pages: PageClient, world: Any) -> None:
    code = one_code(world)
    pages.sign_in(world.a.clerk_id)
    r = confirm(pages, world, code, token=False)
    assert r.status_code == 403
    assert statuses(world.db, [code]) == ["unused"]


def test_each_refusal_has_its_message(pages: PageClient, world: Any, api: Any) -> None:
    pages.sign_in(world.a.manager_id)
    # Unknown / malformed.
    for typed in ("0000 0000 0000", "abc"):
        assert (
            refusal(look(pages, world, typed).text)
            == "voucher_not_found: 未找到券码，请核对后重新输入"
        )
        r = confirm(pages, world, typed)
        assert refusal(r.text) == "voucher_not_found: 未找到券码，请核对后重新输入"

    refunded, expired = one_code(world), one_code(world)
    set_vouchers(world.db, [refunded], status="refunded")
    set_vouchers(world.db, [expired], valid_from=ago(days=40), valid_until=ago(days=1))
    for code, expected in (
        (refunded, "voucher_refunded: 该券码已退款，不能核销"),
        (expired, "voucher_expired: 该券码已过期，不能核销"),
    ):
        assert refusal(look(pages, world, code).text) == expected
        assert refusal(confirm(pages, world, code).text) == expected
    assert statuses(world.db, [refunded, expired]) == ["refunded", "unused"]

    # A booked slot tomorrow: too early; then a slot that has ended: too late.
    slot = a_slot_deal(world, starts_in=timedelta(days=1))
    booked = buy(api, world.tokens["consumer"], [deal_item(slot)]).codes[0]
    store = slot.store_id
    for text in (look(pages, world, booked, store).text, confirm(pages, world, booked, store).text):
        assert (refusal(text) or "").startswith("slot_not_now: 未到预约时间：预约场次 ")
    move_slot(world.db, slot.slot_id, ago(hours=3), ago(hours=1))
    for text in (look(pages, world, booked, store).text, confirm(pages, world, booked, store).text):
        assert (refusal(text) or "").startswith("slot_not_now: 已过预约时间：预约场次 ")
    assert statuses(world.db, [booked]) == ["unused"]
    move_slot(world.db, slot.slot_id, later(minutes=10), later(hours=2))  # opens early: fine
    assert confirm(pages, world, booked, store).status_code == 303
    assert statuses(world.db, [booked]) == ["redeemed"]


def test_guessing_is_throttled_with_a_clear_message(pages: PageClient, world: Any) -> None:
    code = one_code(world)
    pages.sign_in(world.a.clerk_id)
    for n in range(10):
        confirm(pages, world, f"9999 0000 {n:04d}")
    r = confirm(pages, world, code)
    assert r.status_code == 429
    assert (refusal(r.text) or "").startswith("redemption_throttled: 操作过于频繁")
    assert statuses(world.db, [code]) == ["unused"]


def test_dashboard_counts_todays_redemptions(pages: PageClient, world: Any) -> None:
    code, other = one_code(world), one_code(world)
    pages.sign_in(world.a.manager_id)
    assert "0 张" in pages.get(f"/console/m/{world.a.id}").text
    assert confirm(pages, world, code).status_code == 303
    assert confirm(pages, world, other, store=world.a.store_ids[1]).status_code == 303
    board = pages.get(f"/console/m/{world.a.id}").text
    assert re.search(r"今日核销</div>\s*<div class=\"value\">2 张", board), board
    # The clerk counts only its own store.
    clerk_board = pages.sign_in(world.a.clerk_id).get(f"/console/m/{world.a.id}").text
    assert re.search(r"今日核销</div>\s*<div class=\"value\">1 张", clerk_board)


def test_htmx_preview_returns_the_result(pages: PageClient, world: Any) -> None:
    code = one_code(world)
    pages.sign_in(world.a.clerk_id)
    r = pages.get(
        url(world),
        params={"code": code, "store_id": str(world.a.store_ids[0])},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200 and 'id="redeem-result"' in r.text
