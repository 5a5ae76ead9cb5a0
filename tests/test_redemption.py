"""核销 (DESIGN.md law 2): preview, redeem, every refusal with its stable code, clerks and stores,
Idempotency-Key, the throttle on guessing, the audit, undo. Both databases.
Concurrency against a real server: tests/test_redemption_concurrency.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from o2o import events, wiring
from o2o.fulfilment import vouchers
from o2o.fulfilment.models import EXPIRED, REDEEMED, REFUNDED, UNUSED
from o2o.fulfilment.vouchers import RedemptionSettings
from o2o.timeutil import utcnow
from tests.voucher_support import (
    a_deal,
    a_slot_deal,
    ago,
    attempts,
    buy,
    count_vouchers,
    deal_item,
    later,
    move_slot,
    order_status,
    redeem,
    set_vouchers,
    statuses,
    voucher,
)


def preview(
    api: Any, world: Any, code: str, *, as_: str = "clerk", merchant_id: int | None = None
) -> Any:
    return api.get(
        f"/api/v1/merchants/{merchant_id or world.a.id}/vouchers/{code}", as_=world.tokens[as_]
    )


def problem(r: Any) -> tuple[int, str]:
    return r.status_code, r.json().get("code")


# --- preview -------------------------------------------------------------------------------


def test_preview_shows_what_the_clerk_needs(api: Any, world: Any, db: Any) -> None:
    bought = buy(api, world.tokens["consumer"], [deal_item(a_deal(world), 2)])
    r = preview(api, world, vouchers.format_code(bought.codes[0]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == bought.codes[0]
    assert body["listing_title"] == "双人套餐"
    assert body["quantity"] == 1 and body["line_quantity"] == 2 and body["unused_of_line"] == 2
    assert body["status"] == "unused" and body["status_label"] == "未使用"
    phone = world.phones["consumer"]
    assert body["holder_phone"] == f"{phone[:3]}****{phone[-4:]}"
    assert phone not in r.text
    assert body["order_no"] == bought.order_no
    assert body["slot"] is None
    assert body["valid_until"] > body["valid_from"]

    slot = a_slot_deal(world)
    booked = buy(api, world.tokens["consumer"], [deal_item(slot)])
    body = preview(api, world, booked.codes[0], as_="manager").json()
    assert body["slot"]["id"] == slot.slot_id and body["slot"]["store_id"] == slot.store_id


def test_preview_is_isolated_per_merchant(api: Any, world: Any, db: Any) -> None:
    a_code = buy(api, world.tokens["consumer"], [deal_item(a_deal(world))]).codes[0]
    unknown = api.get(
        f"/api/v1/merchants/{world.b.id}/vouchers/000000000000", as_=world.tokens["other_manager"]
    )
    foreign = api.get(
        f"/api/v1/merchants/{world.b.id}/vouchers/{a_code}", as_=world.tokens["other_manager"]
    )
    assert unknown.status_code == foreign.status_code == 404
    assert unknown.json() == foreign.json()  # nothing tells the two apart
    assert unknown.headers["content-type"] == foreign.headers["content-type"]
    # Not staff of A at all: 403 before any lookup.
    for role in ("consumer", "other_manager", "operator"):
        assert preview(api, world, a_code, as_=role).status_code == 403
    assert api.get(f"/api/v1/merchants/{world.a.id}/vouchers/{a_code}").status_code == 401
    for role in ("clerk", "manager", "owner"):
        assert preview(api, world, a_code, as_=role).status_code == 200


def test_a_clerk_previews_only_vouchers_usable_at_its_stores(api: Any, world: Any, db: Any) -> None:
    elsewhere = a_deal(world, stores=[world.a.store_ids[1]])
    code = buy(api, world.tokens["consumer"], [deal_item(elsewhere)]).codes[0]
    assert problem(preview(api, world, code)) == (403, "store_not_valid_for_voucher")
    assert preview(api, world, code, as_="manager").status_code == 200


# --- redeem --------------------------------------------------------------------------------


def test_redeem_and_its_answer(api: Any, world: Any, db: Any) -> None:
    bought = buy(api, world.tokens["consumer"], [deal_item(a_deal(world))])
    code = bought.codes[0]
    before = utcnow()
    r = redeem(api, world, vouchers.format_code(code))  # typed with spaces
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["voucher"]["code"] == code
    assert body["voucher"]["status"] == "redeemed"
    assert body["voucher"]["store_id"] == world.a.store_ids[0]
    assert body["order_no"] == bought.order_no
    assert body["listing_title"] == "双人套餐"
    row = voucher(db, code)
    assert row.status == REDEEMED
    assert row.redeemed_store_id == world.a.store_ids[0]
    assert row.redeemed_by == world.a.clerk_id
    assert row.redeemed_at is not None and row.redeemed_at >= before - timedelta(seconds=1)
    assert order_status(db, bought.order_no) == "completed"
    [audit] = attempts(db, action="redeem")
    assert (audit.result, audit.user_id, audit.store_id, audit.voucher_id, audit.code) == (
        "ok",
        world.a.clerk_id,
        world.a.store_ids[0],
        row.id,
        code,
    )

    again = redeem(api, world, code, as_="manager", store_id=world.a.store_ids[1])
    assert problem(again) == (409, "voucher_already_redeemed")
    assert again.json()["redeemed_store_id"] == world.a.store_ids[0]
    assert again.json()["redeemed_store_name"] == "甲火锅0号店"
    assert again.json()["redeemed_at"]
    assert "甲火锅0号店" in again.json()["detail"]
    assert voucher(db, code).redeemed_by == world.a.clerk_id  # the first redemption stands


def test_every_refusal_has_its_own_code(api: Any, world: Any, db: Any, settings: Any) -> None:
    token = world.tokens["consumer"]
    store0, store1 = world.a.store_ids

    assert problem(redeem(api, world, "000000000000")) == (404, "voucher_not_found")
    assert problem(redeem(api, world, "not a code")) == (404, "voucher_not_found")

    # Another merchant's code: exactly like an unknown one.
    b_deal_code = buy(
        api,
        token,
        [deal_item(a_deal_of_b(world))],
    ).codes[0]
    foreign = redeem(api, world, b_deal_code, as_="manager")
    unknown = redeem(api, world, "999999999999", as_="manager")
    assert problem(foreign) == problem(unknown) == (404, "voucher_not_found")
    assert foreign.json() == unknown.json()

    codes = buy(api, token, [deal_item(a_deal(world), 4)]).codes
    # Refunded → 410.
    assert api.post(f"/api/v1/vouchers/{codes[0]}/refund", json={}, as_=token).status_code == 201
    assert problem(redeem(api, world, codes[0])) == (410, "voucher_refunded")
    # Expired by the worker → 410; validity over but not yet swept → 410 as well.
    set_vouchers(db, [codes[1]], status=EXPIRED, expired_at=ago(seconds=1))
    assert problem(redeem(api, world, codes[1])) == (410, "voucher_expired")
    set_vouchers(db, [codes[2]], valid_until=ago(seconds=1))
    assert problem(redeem(api, world, codes[2])) == (410, "voucher_expired")
    assert statuses(db, codes[:3]) == [REFUNDED, EXPIRED, UNUSED]

    # Store not valid for the offer; a clerk not of this store; another merchant's store.
    only_store1 = buy(api, token, [deal_item(a_deal(world, stores=[store1]))]).codes[0]
    assert problem(redeem(api, world, only_store1, as_="manager", store_id=store0)) == (
        403,
        "store_not_valid_for_voucher",
    )
    assert problem(redeem(api, world, codes[3], store_id=store1)) == (403, "store_not_allowed")
    assert problem(redeem(api, world, codes[3], as_="owner", store_id=world.b.store_ids[0])) == (
        403,
        "store_not_valid_for_voucher",
    )
    # Not staff of the merchant at all.
    for role in ("consumer", "other_manager", "operator"):
        assert redeem(api, world, codes[3], as_=role).status_code == 403
    assert statuses(db, [codes[3], only_store1]) == [UNUSED, UNUSED]

    # Bad input: a clear 422, nothing changes.
    for body in (
        {"code": codes[3]},
        {"code": codes[3], "store_id": 2**70},
        {"code": codes[3], "store_id": "x"},
        {"code": "1" * 41, "store_id": store0},
        {"code": "\x00" * 12, "store_id": store0},
    ):
        r = api.post(
            f"/api/v1/merchants/{world.a.id}/redemptions", json=body, as_=world.tokens["clerk"]
        )
        assert r.status_code == 422, (body, r.text)
    assert statuses(db, [codes[3]]) == [UNUSED]
    assert redeem(api, world, codes[3]).status_code == 200


def a_deal_of_b(world: Any) -> Any:
    from tests.checkout_support import make_deal

    return make_deal(world.db, world.b.id, world.category_id, world.b.store_ids)


def test_slot_vouchers_are_redeemed_around_their_slot(api: Any, world: Any, db: Any) -> None:
    slot = a_slot_deal(world, capacity=5)
    codes = buy(api, world.tokens["consumer"], [deal_item(slot, 3)]).codes
    # Tomorrow's slot: too early.
    r = redeem(api, world, codes[0])
    assert problem(r) == (409, "slot_not_now")
    assert r.json()["early_minutes"] == 30
    # Starts in 20 minutes: inside the 30-minute early window.
    move_slot(db, slot.slot_id, later(minutes=20), later(minutes=140))
    assert redeem(api, world, codes[0]).status_code == 200
    # Starts in 40 minutes: still too early.
    move_slot(db, slot.slot_id, later(minutes=40), later(minutes=160))
    assert problem(redeem(api, world, codes[1])) == (409, "slot_not_now")
    # Under way: fine; over: in the past.
    move_slot(db, slot.slot_id, ago(minutes=30), later(minutes=30))
    assert redeem(api, world, codes[1]).status_code == 200
    move_slot(db, slot.slot_id, ago(minutes=150), ago(minutes=10))
    assert problem(redeem(api, world, codes[2])) == (409, "slot_not_now")
    assert statuses(db, codes) == [REDEEMED, REDEEMED, UNUSED]


def test_the_early_window_is_a_setting(
    api: Any, world: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        vouchers, "_settings_from_env", lambda: RedemptionSettings(redemption_early_minutes=60)
    )
    slot = a_slot_deal(world)
    code = buy(api, world.tokens["consumer"], [deal_item(slot)]).codes[0]
    move_slot(db, slot.slot_id, later(minutes=50), later(minutes=170))
    assert redeem(api, world, code).status_code == 200


def test_idempotency_key_replays_the_redemption(api: Any, world: Any, db: Any) -> None:
    codes = buy(api, world.tokens["consumer"], [deal_item(a_deal(world), 2)]).codes
    first = redeem(api, world, codes[0], key="scan-1")
    replay = redeem(api, world, codes[0], key="scan-1")
    assert first.status_code == replay.status_code == 200
    assert first.json() == replay.json()
    other_body = redeem(api, world, codes[1], key="scan-1")
    assert problem(other_body) == (409, "idempotency_key_reused")
    assert statuses(db, codes) == [REDEEMED, UNUSED]
    fresh_key = redeem(api, world, codes[0], key="scan-2")
    assert problem(fresh_key) == (409, "voucher_already_redeemed")
    results = [a.result for a in attempts(db, action="redeem")]
    assert results == ["ok", "replayed", "idempotency_key_reused", "voucher_already_redeemed"]


# --- guessing is expensive -----------------------------------------------------------------


def test_unknown_codes_are_throttled_per_staff_and_per_store(
    api: Any, world: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        vouchers,
        "_settings_from_env",
        lambda: RedemptionSettings(
            redemption_staff_failures_per_minute=10, redemption_store_failures_per_minute=15
        ),
    )
    code = buy(api, world.tokens["consumer"], [deal_item(a_deal(world))]).codes[0]
    # Someone who is not staff cannot use up the store's allowance.
    for i in range(20):
        assert redeem(api, world, f"{i:012d}", as_="consumer").status_code == 403
    results = [redeem(api, world, f"{100 + i:012d}").status_code for i in range(12)]
    assert results == [404] * 10 + [429] * 2
    throttled = redeem(api, world, code)  # even a real code: the clerk must wait
    assert problem(throttled) == (429, "redemption_throttled")
    assert throttled.headers["retry-after"] == "60"
    # Preview misses count too, and are throttled the same way.
    assert preview(api, world, "123412341234").status_code == 429
    # Another staff member goes on at that store until the store's limit (15).
    results = [redeem(api, world, f"{200 + i:012d}", as_="manager").status_code for i in range(6)]
    assert results == [404] * 5 + [429]
    assert redeem(api, world, code, as_="owner").status_code == 429
    # Another store of the merchant is not affected: one store's guessing cannot stop another.
    other_store = world.a.store_ids[1]
    r = redeem(api, world, "000000000777", store_id=other_store, as_="owner")
    assert problem(r) == (404, "voucher_not_found")
    # Another merchant is not affected.
    assert problem(
        api.post(
            f"/api/v1/merchants/{world.b.id}/redemptions",
            json={"code": "000000000001", "store_id": world.b.store_ids[0]},
            as_=world.tokens["other_manager"],
        )
    ) == (404, "voucher_not_found")
    assert count_vouchers(db, status=REDEEMED) == 0
    # Every attempt by staff of A is audited, the throttled ones included.
    audit = attempts(db, merchant_id=world.a.id)
    assert len(audit) == 12 + 1 + 1 + 6 + 1 + 1
    assert sum(a.result == "redemption_throttled" for a in audit) == 2 + 1 + 1 + 1 + 1
    # The window passes: the clerk may work again.
    with db.transaction() as session:
        from sqlalchemy import update

        from o2o.ratelimit import RateCounter

        session.execute(update(RateCounter).values(window_ends=utcnow() - timedelta(seconds=1)))
    assert redeem(api, world, code).status_code == 200


def test_refusals_about_real_vouchers_do_not_throttle(api: Any, world: Any, db: Any) -> None:
    code = buy(api, world.tokens["consumer"], [deal_item(a_deal(world))]).codes[0]
    assert redeem(api, world, code).status_code == 200
    for _ in range(15):
        assert problem(redeem(api, world, code)) == (409, "voucher_already_redeemed")
    assert problem(redeem(api, world, "000000000000")) == (404, "voucher_not_found")


# --- undo ----------------------------------------------------------------------------------


def undo(api: Any, world: Any, code: str, *, as_: str = "manager", reason: str = "扫错了") -> Any:
    return api.post(
        f"/api/v1/merchants/{world.a.id}/redemptions/{code}/undo",
        json={"reason": reason},
        as_=world.tokens[as_],
    )


def test_a_manager_undoes_a_redemption_within_the_window(api: Any, world: Any, db: Any) -> None:
    bought = buy(api, world.tokens["consumer"], [deal_item(a_deal(world))])
    code = bought.codes[0]
    assert redeem(api, world, code).status_code == 200
    assert order_status(db, bought.order_no) == "completed"

    assert undo(api, world, code, as_="clerk").status_code == 403
    assert undo(api, world, code, as_="other_manager").status_code == 403
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/redemptions/{code}/undo",
        json={"reason": ""},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 422
    r = undo(api, world, code)
    assert r.status_code == 200, r.text
    assert r.json()["voucher"]["status"] == "unused"
    assert r.json()["reason"] == "扫错了"
    row = voucher(db, code)
    assert (row.status, row.redeemed_at, row.redeemed_store_id, row.redeemed_by) == (
        UNUSED,
        None,
        None,
        None,
    )
    assert order_status(db, bought.order_no) == "paid"
    [audit] = attempts(db, action="undo", result="ok")
    assert audit.reason == "扫错了" and audit.user_id == world.a.manager_id
    assert audit.voucher_id == row.id
    # Nothing to undo now; an unknown code is 404.
    assert problem(undo(api, world, code)) == (409, "voucher_not_redeemed")
    assert problem(undo(api, world, "000000000000")) == (404, "voucher_not_found")
    # It can be redeemed again, and the order completes again.
    assert redeem(api, world, code).status_code == 200
    assert order_status(db, bought.order_no) == "completed"


def test_undo_window_is_enforced(
    api: Any, world: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = buy(api, world.tokens["consumer"], [deal_item(a_deal(world), 2)]).codes
    for code in codes:
        assert redeem(api, world, code).status_code == 200
    set_vouchers(db, [codes[0]], redeemed_at=ago(minutes=11))
    assert problem(undo(api, world, codes[0], as_="owner")) == (409, "undo_window_passed")
    set_vouchers(db, [codes[1]], redeemed_at=ago(minutes=9))
    assert undo(api, world, codes[1], as_="owner").status_code == 200
    assert statuses(db, codes) == [REDEEMED, UNUSED]
    # The window is a setting (O2O_REDEMPTION_UNDO_MINUTES).
    monkeypatch.setattr(
        vouchers, "_settings_from_env", lambda: RedemptionSettings(redemption_undo_minutes=30)
    )
    assert undo(api, world, codes[0]).status_code == 200
    refused = attempts(db, action="undo", result="undo_window_passed")
    assert len(refused) == 1 and refused[0].user_id == world.a.owner_id


# --- the audit -----------------------------------------------------------------------------


def test_staff_read_the_redemption_log(api: Any, world: Any, db: Any) -> None:
    token = world.tokens["consumer"]
    codes = buy(api, token, [deal_item(a_deal(world), 2)]).codes
    assert redeem(api, world, codes[0]).status_code == 200
    assert (
        redeem(api, world, codes[1], as_="manager", store_id=world.a.store_ids[1]).status_code
        == 200
    )
    assert redeem(api, world, "000000000000", as_="manager").status_code == 404
    url = f"/api/v1/merchants/{world.a.id}/redemptions"

    everything = api.get(url, as_=world.tokens["manager"]).json()["items"]
    assert [(i["result"], i["store_id"]) for i in everything] == [
        ("voucher_not_found", world.a.store_ids[0]),
        ("ok", world.a.store_ids[1]),
        ("ok", world.a.store_ids[0]),
    ]
    assert everything[1]["listing_title"] == "双人套餐" and everything[1]["order_no"]
    ok = api.get(url + "?action=redeem&result=ok&limit=1", as_=world.tokens["owner"]).json()
    assert len(ok["items"]) == 1 and ok["next_cursor"]
    rest = api.get(
        url + f"?action=redeem&result=ok&cursor={ok['next_cursor']}", as_=world.tokens["owner"]
    ).json()
    assert [i["code"] for i in ok["items"] + rest["items"]] == [codes[1], codes[0]]
    # A clerk: its own store only; it may not ask for another store.
    clerk_view = api.get(url, as_=world.tokens["clerk"]).json()["items"]
    assert {i["store_id"] for i in clerk_view} == {world.a.store_ids[0]}
    assert (
        api.get(url + f"?store_id={world.a.store_ids[1]}", as_=world.tokens["clerk"]).status_code
        == 403
    )
    for role in ("consumer", "other_manager"):
        assert api.get(url, as_=world.tokens[role]).status_code == 403


def test_redemptions_and_undos_are_published(api: Any, world: Any, db: Any) -> None:
    heard: list[tuple[str, str, int]] = []
    code = buy(api, world.tokens["consumer"], [deal_item(a_deal(world, price_fen=4321))]).codes[0]
    with (
        wiring.extra_in_transaction(
            events.VoucherRedeemed, lambda s, e: heard.append(("redeemed", e.code, e.amount_fen))
        ),
        wiring.extra_in_transaction(
            events.RedemptionUndone, lambda s, e: heard.append(("undone", e.code, e.amount_fen))
        ),
    ):
        assert redeem(api, world, code).status_code == 200
        assert undo(api, world, code).status_code == 200
    assert heard == [("redeemed", code, 4321), ("undone", code, 4321)]
