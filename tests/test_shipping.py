"""Shipping goods orders: partial shipments, the carrier registry and tracking-number formats,
signed tracking notifications (idempotent, forward-only), the consumer's timeline, confirmation
of receipt and the worker's auto-confirmation (twice, and several workers at once). Both
databases."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o import events, wiring
from o2o.accounts.models import User
from o2o.errors import AppError, Conflict
from o2o.merchants.access import load_actor
from o2o.orders import service as orders_service
from o2o.orders.models import Order
from o2o.payments.models import Refund
from o2o.shipping import carriers, service
from o2o.shipping.models import Shipment, ShipmentLine, TrackingEvent
from o2o.timeutil import utcnow
from o2o.worker import load_jobs
from tests.checkout_support import checkout_goods, make_deal, make_goods, place
from tests.shipping_support import (
    notify_tracking,
    orm_goods_order,
    paid_goods_order,
    sf_number,
    shift_order,
    signed,
)


def ship_url(world: Any, order_no: str, merchant: str = "a") -> str:
    return f"/api/v1/merchants/{getattr(world, merchant).id}/orders/{order_no}/shipments"


def ship(api: Any, world: Any, order_no: str, role: str = "manager", **body: Any) -> Any:
    payload = {"carrier": "SF", "tracking_no": sf_number(), **body}
    return api.post(ship_url(world, order_no), json=payload, as_=world.tokens[role])


def order_row(db: Any, order_no: str) -> Order:
    with db.transaction(readonly=True) as session:
        return session.scalar(select(Order).where(Order.order_no == order_no))


# --- carriers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "good", "bad"),
    [
        (
            "SF",
            ["SF1234567890123", "SF123456789012", "123456789012", "sf 1234 5678 9012 3"],
            [
                "SF12345",
                "1234567890123",
                "YT1234567890123",
                "SF١٢٣٤٥٦٧٨٩٠١٢٣",
                "１２３４５６７８９０１２",
            ],
        ),
        (
            "ZTO",
            ["773012345678", "75123456789012", "212345678901234"],
            ["12345678901", "873012345678", "7730123456789012"],
        ),
        ("YTO", ["YT1234567890123", "yt1234567890123"], ["YT123456789012", "1234567890123"]),
        ("YD", ["1234567890123", "123456789012345"], ["12345678901234", "YD1234567890123"]),
        (
            "JD",
            ["JDVA12345678901", "JD0012345678901", "JDX123456789012"],
            ["JD12345", "1234567890123"],
        ),
        ("EMS", ["EA123456789CN", "1012345678901"], ["EA12345678CN", "E123456789CN"]),
        ("STO", ["773012345678", "7730123456789"], ["77301234567", "STO123456789"]),
        ("JTSD", ["JT5012345678901"], ["JT501234567890", "5012345678901"]),
        ("DBL", ["DPK123456", "1234567890"], ["12345", "A" * 31, "DPK-123456"]),
    ],
)
def test_tracking_number_formats(code: str, good: list[str], bad: list[str]) -> None:
    carrier = carriers.get_carrier(code)
    for number in good:
        assert carriers.check_tracking_no(carrier, number) == carriers.normalize_tracking_no(number)
    for number in bad:
        with pytest.raises(AppError) as exc:
            carriers.check_tracking_no(carrier, number)
        assert exc.value.status == 422 and exc.value.code == "invalid_tracking_no", number


def test_carrier_list_and_secrets(api: Any, settings: Any, monkeypatch: Any) -> None:
    listed = api.get("/api/v1/logistics/carriers").json()
    assert {c["code"] for c in listed} >= {"SF", "ZTO", "YTO", "YD", "JD", "EMS", "STO", "JTSD"}
    assert next(c for c in listed if c["code"] == "SF")["name"] == "顺丰速运"
    derived = {
        code: carriers.carrier_secret(settings, code, environ={}) for code in carriers.CARRIERS
    }
    assert len(set(derived.values())) == len(derived)  # one secret per carrier
    assert derived["SF"] == carriers.carrier_secret(settings, "SF", environ={})  # stable
    assert (
        carriers.carrier_secret(settings, "SF", environ={"O2O_LOGISTICS_SECRET_SF": "abc"}) == "abc"
    )


# --- shipping ------------------------------------------------------------------------------------


def test_partial_shipments_then_the_order_is_shipped(api: Any, world: Any) -> None:
    order = paid_goods_order(api, world, lines=3)
    first = ship(api, world, order.order_no, line_ids=[order.line_ids[0], order.line_ids[1]])
    assert first.status_code == 201, first.text
    assert first.json()["order_status"] == "paid"  # one line still to go
    assert [line["line_id"] for line in first.json()["shipment"]["lines"]] == order.line_ids[:2]
    assert order_row(world.db, order.order_no).shipped_at is None
    with world.db.transaction(readonly=True) as session:
        row = order_row(world.db, order.order_no)
        assert service.has_shipments(session, row.id)

    # no line_ids: the rest
    second = ship(
        api, world, order.order_no, role="owner", carrier="ZTO", tracking_no="773012345678"
    )
    assert second.status_code == 201, second.text
    assert second.json()["order_status"] == "shipped"
    assert second.json()["order_status_label"] == "已发货"
    assert second.json()["shipment"]["carrier_name"] == "中通快递"
    assert [line["line_id"] for line in second.json()["shipment"]["lines"]] == order.line_ids[2:]
    row = order_row(world.db, order.order_no)
    assert row.status == "shipped" and row.shipped_at is not None

    mine = api.get(f"/api/v1/orders/{order.order_no}/shipments", as_=world.tokens["consumer"])
    assert mine.status_code == 200
    body = mine.json()
    assert [s["carrier"] for s in body["shipments"]] == ["SF", "ZTO"]
    assert body["auto_confirm_at"] is not None
    staff = api.get(ship_url(world, order.order_no), as_=world.tokens["manager"])
    assert staff.status_code == 200 and len(staff.json()["shipments"]) == 2

    # everything shipped: nothing more to ship (409, the order is no longer paid)
    again = ship(api, world, order.order_no)
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"


def test_full_refund_is_refused_once_anything_shipped(api: Any, world: Any, db: Any) -> None:
    """After the first parcel leaves, the consumer's money comes back through after-sales."""
    token = world.tokens["consumer"]
    order = paid_goods_order(api, world, lines=2, shipping_fee_fen=500)
    assert ship(api, world, order.order_no, line_ids=[order.line_ids[0]]).status_code == 201
    assert order_row(db, order.order_no).status == "paid"  # partly shipped: still paid
    r = api.post(f"/api/v1/orders/{order.order_no}/refunds", json={}, as_=token)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "refund_after_shipping"
    assert "售后" in r.json()["detail"]
    assert ship(api, world, order.order_no).status_code == 201
    r = api.post(f"/api/v1/orders/{order.order_no}/refunds", json={"reason": "不想要了"}, as_=token)
    assert r.status_code == 409 and r.json()["code"] == "refund_after_shipping"
    row = order_row(db, order.order_no)
    assert row.status == "shipped" and row.refunded_fen == 0
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 0

    # An order not shipped at all is still refunded in full the direct way.
    other = paid_goods_order(api, world)
    r = api.post(f"/api/v1/orders/{other.order_no}/refunds", json={}, as_=token)
    assert r.status_code == 201, r.text


def test_shipping_refusals(api: Any, world: Any, db: Any) -> None:
    order = paid_goods_order(api, world, lines=2)
    no = order.order_no
    line = order.line_ids[0]
    # who: clerks, consumers, other merchants' staff cannot ship A's goods
    assert ship(api, world, no, role="clerk").status_code == 403
    assert ship(api, world, no, role="consumer").status_code == 403
    assert ship(api, world, no, role="other_manager").status_code == 403
    other_url = ship_url(world, no, merchant="b")  # B's staff, B's URL: not B's order
    r = api.post(
        other_url,
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["other_manager"],
    )
    assert r.status_code == 404
    assert (
        api.post(
            ship_url(world, no), json={"carrier": "SF", "tracking_no": sf_number()}
        ).status_code
        == 401
    )
    # what: bad carrier, bad number, lines not in the order, huge ids
    assert ship(api, world, no, carrier="XX").json()["code"] == "unknown_carrier"
    bad = ship(api, world, no, carrier="YTO", tracking_no="YT123")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_tracking_no"
    assert ship(api, world, no, line_ids=[10**9]).status_code == 422
    assert ship(api, world, no, line_ids=[2**70]).status_code == 422
    assert ship(api, world, no, line_ids=[]).status_code == 422
    assert ship(api, world, no, tracking_no="").status_code == 422
    # a tracking number is one parcel
    used = sf_number()
    assert ship(api, world, no, tracking_no=used, line_ids=[line]).status_code == 201
    dup = ship(api, world, no, tracking_no=used.lower(), line_ids=[order.line_ids[1]])
    assert dup.status_code == 409 and dup.json()["code"] == "tracking_no_in_use"
    twice = ship(api, world, no, line_ids=[line])
    assert twice.status_code == 409 and twice.json()["code"] == "line_already_shipped"
    assert order_row(db, no).status == "paid"
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Shipment)) == 1


def test_only_paid_goods_orders_ship(api: Any, world: Any, db: Any) -> None:
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id, stock=10)
    unpaid = checkout_goods(api, token, goods)["orders"][0]["order_no"]
    r = ship(api, world, unpaid)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    # a refunding order cannot ship
    refunding = paid_goods_order(api, world)
    r = api.post(
        f"/api/v1/orders/{refunding.order_no}/refunds", json={"reason": "不想要了"}, as_=token
    )
    assert r.status_code == 201, r.text
    assert order_row(db, refunding.order_no).status in ("refunding", "refunded")
    assert ship(api, world, refunding.order_no).status_code == 409
    # service orders are redeemed, not shipped
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids)
    body = place(api, token, [{"listing_id": deal.listing_id}]).json()
    r = ship(api, world, body["orders"][0]["order_no"])
    assert r.status_code == 409 and r.json()["code"] == "not_goods_order"
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Shipment)) == 0


def test_concurrent_shipments_of_one_order_one_wins(world: Any, db: Any) -> None:
    order = orm_goods_order(world, lines=2)
    with db.transaction(readonly=True) as session:
        actor = load_actor(session, session.get(User, world.a.manager_id))
    results: list[str] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            with db.transaction() as session:
                service.ship(
                    session,
                    actor,
                    world.a.id,
                    order.order_no,
                    carrier="JD",
                    tracking_no=f"JD{i:013d}",
                )
            results.append("ok")
        except Conflict as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1, results
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(ShipmentLine)) == 2
    assert order_row(db, order.order_no).status == "shipped"


# --- tracking ------------------------------------------------------------------------------------


def shipped_order(api: Any, world: Any, tracking_no: str = "SF1234567890123") -> str:
    order = paid_goods_order(api, world)
    r = ship(api, world, order.order_no, tracking_no=tracking_no)
    assert r.status_code == 201, r.text
    return order.order_no


def at(minutes: int) -> str:
    return (utcnow().replace(microsecond=0) - timedelta(minutes=minutes)).isoformat()


def test_tracking_events_append_once_and_move_forward(api: Any, world: Any, settings: Any) -> None:
    no = shipped_order(api, world)
    events = [
        {
            "time": at(50),
            "status": "collected",
            "description": "快递员已揽收",
            "location": "深圳南山",
        },
        {
            "time": at(40),
            "status": "in_transit",
            "description": "到达深圳转运中心",
            "location": "深圳",
        },
    ]
    r = notify_tracking(api, settings, "SF", "SF1234567890123", events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0, "status": "in_transit"}
    # a replay, and a batch mixing old and new
    assert notify_tracking(api, settings, "SF", "sf1234567890123", events).json() == {
        "accepted": 0,
        "duplicates": 2,
        "status": "in_transit",
    }
    delivered = {
        "time": at(5),
        "status": "delivered",
        "description": "已签收，签收人：本人",
        "location": "深圳南山",
    }
    r = notify_tracking(api, settings, "SF", "SF1234567890123", [events[1], delivered])
    assert r.json() == {"accepted": 1, "duplicates": 1, "status": "delivered"}
    # a late, older event is kept in the timeline but never moves the parcel back
    late = {"time": at(20), "status": "delivering", "description": "派送中", "location": "深圳南山"}
    assert (
        notify_tracking(api, settings, "SF", "SF1234567890123", [late]).json()["status"]
        == "delivered"
    )
    # naive times are Beijing time
    naive = (utcnow() + timedelta(hours=8) - timedelta(minutes=1)).replace(
        microsecond=0, tzinfo=None
    )
    extra = {"time": naive.isoformat(), "status": "exception", "description": "回访"}
    assert notify_tracking(api, settings, "SF", "SF1234567890123", [extra]).json()["accepted"] == 1

    timeline = api.get(f"/api/v1/orders/{no}/shipments", as_=world.tokens["consumer"]).json()
    parcel = timeline["shipments"][0]
    assert parcel["status"] == "delivered" and parcel["status_label"] == "已签收"
    assert parcel["delivered_at"] is not None
    statuses = [e["status"] for e in parcel["events"]]
    assert statuses == ["exception", "delivered", "delivering", "in_transit", "collected"]
    assert parcel["events"][1]["description"].startswith("已签收")
    assert (
        api.get(f"/api/v1/orders/{no}/shipments", as_=world.tokens["other_consumer"]).status_code
        == 404
    )
    assert api.get(f"/api/v1/orders/{no}/shipments").status_code == 401


def test_exception_then_moving_on(api: Any, world: Any, settings: Any) -> None:
    shipped_order(api, world, tracking_no="SF1234567890999")
    steps = [("exception", 30), ("in_transit", 20), ("delivering", 10)]
    for status, minutes in steps:
        r = notify_tracking(
            api, settings, "SF", "SF1234567890999", [{"time": at(minutes), "status": status}]
        )
        assert r.json()["status"] == status


def test_notification_signature_and_input_refusals(
    api: Any, world: Any, settings: Any, db: Any, monkeypatch: Any
) -> None:
    shipped_order(api, world)
    payload = {"tracking_no": "SF1234567890123", "events": [{"time": at(1), "status": "collected"}]}
    url = "/api/v1/logistics/notify/SF"

    body, headers = signed(settings, "SF", payload)
    tampered = body.replace(b"collected", b"delivered")
    r = api.post(url, content=tampered, headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "signature_invalid"
    # another carrier's secret
    body, headers = signed(settings, "SF", payload, secret=carriers.carrier_secret(settings, "ZTO"))
    assert api.post(url, content=body, headers=headers).json()["code"] == "signature_invalid"
    # stale, and from the future
    for skew in (-301, 301):
        body, headers = signed(settings, "SF", payload, timestamp=int(time.time()) + skew)
        r = api.post(url, content=body, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "timestamp_stale"
    body, headers = signed(settings, "SF", payload)
    r = api.post(
        url, content=body, headers={"X-Logistics-Timestamp": headers["X-Logistics-Timestamp"]}
    )
    assert r.status_code == 401 and r.json()["code"] == "signature_missing"
    r = api.post(url, content=body, headers={**headers, "X-Logistics-Timestamp": "soon"})
    assert r.status_code == 401
    # the timestamp is signed: a fresh timestamp on a captured signature fails
    old_ts = int(time.time()) - 10
    body, headers = signed(settings, "SF", payload, timestamp=old_ts)
    headers["X-Logistics-Timestamp"] = str(old_ts + 5)
    assert api.post(url, content=body, headers=headers).status_code == 401
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(TrackingEvent)) == 0

    # unknown carrier, unknown number (signed correctly)
    assert api.post("/api/v1/logistics/notify/XX", content=body, headers=headers).status_code == 404
    unknown = {**payload, "tracking_no": "SF9999999999999"}
    body, headers = signed(settings, "SF", unknown)
    r = api.post(url, content=body, headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "tracking_not_found"
    # signed junk: 422, never a 500
    for junk in (
        b"not json",
        b"{}",
        b'{"tracking_no": "SF1", "events": [{"time": "x", "status": "collected"}]}',
        b'{"tracking_no": "SF1", "events": [{"time": "2024-01-01T00:00:00Z", "status": "lost"}]}',
    ):
        body, headers = signed(settings, "SF", junk)
        assert api.post(url, content=body, headers=headers).status_code == 422, junk
    future = {
        **payload,
        "events": [{"time": (utcnow() + timedelta(days=3)).isoformat(), "status": "collected"}],
    }
    body, headers = signed(settings, "SF", future)
    assert api.post(url, content=body, headers=headers).status_code == 422
    assert api.post(url, content=b"x" * (65 * 1024), headers=headers).status_code == 413

    # a secret configured for the carrier replaces the derived one
    monkeypatch.setenv("O2O_LOGISTICS_SECRET_SF", "agreed-with-sf")
    body, headers = signed(settings, "SF", payload, secret="agreed-with-sf")
    assert api.post(url, content=body, headers=headers).status_code == 200
    body, headers = signed(
        settings, "SF", payload, secret=carriers.carrier_secret(settings, "SF", environ={})
    )
    assert api.post(url, content=body, headers=headers).status_code == 401


# --- receipt -------------------------------------------------------------------------------------


def test_confirm_receipt(api: Any, world: Any, db: Any) -> None:
    token = world.tokens["consumer"]
    order = paid_goods_order(api, world)
    url = f"/api/v1/orders/{order.order_no}/confirm-receipt"
    r = api.post(url, as_=token)
    assert r.status_code == 409 and r.json()["code"] == "not_shipped"  # paid, not shipped
    assert ship(api, world, order.order_no).status_code == 201
    assert api.post(url, as_=world.tokens["other_consumer"]).status_code == 404
    assert api.post(url, as_=world.tokens["manager"]).status_code == 404
    assert api.post(url).status_code == 401
    r = api.post(url, as_=token)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed" and r.json()["status_label"] == "已完成"
    assert order_row(db, order.order_no).completed_at is not None
    again = api.post(url, as_=token)
    assert again.status_code == 409
    # services are not received
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids)
    body = place(api, token, [{"listing_id": deal.listing_id}]).json()
    r = api.post(f"/api/v1/orders/{body['orders'][0]['order_no']}/confirm-receipt", as_=token)
    assert r.status_code == 409 and r.json()["code"] == "not_goods_order"


def test_parcel_received_is_published(api: Any, world: Any, db: Any) -> None:
    seen: list[tuple[str, int]] = []

    def listener(session: Any, event: events.ParcelReceived) -> None:
        seen.append(
            (
                event.order_no,
                len(orders_service.lines_by_order(session, [event.order_id])[event.order_id]),
            )
        )

    with wiring.extra_in_transaction(events.ParcelReceived, listener):
        order = paid_goods_order(api, world, lines=2)
        assert ship(api, world, order.order_no).status_code == 201
        assert (
            api.post(
                f"/api/v1/orders/{order.order_no}/confirm-receipt", as_=world.tokens["consumer"]
            ).status_code
            == 200
        )
    assert seen == [(order.order_no, 2)]


def test_auto_confirm_after_the_configured_days_idempotent(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    days = settings.auto_confirm_days
    now = utcnow()
    due = paid_goods_order(api, world)
    not_yet = paid_goods_order(api, world)
    paid_only = paid_goods_order(api, world)
    for order in (due, not_yet):
        assert ship(api, world, order.order_no).status_code == 201
    shift_order(db, due.order_no, shipped_at=now - timedelta(days=days, minutes=1))
    shift_order(db, not_yet.order_no, shipped_at=now - timedelta(days=days) + timedelta(hours=1))
    shift_order(db, paid_only.order_no, paid_at=now - timedelta(days=30))

    job = next(j for j in load_jobs() if j.name == "auto_confirm_receipt")
    assert job.run(db, settings) == 1
    assert job.run(db, settings) == 0  # twice: nothing more
    assert order_row(db, due.order_no).status == "completed"
    assert order_row(db, not_yet.order_no).status == "shipped"
    assert order_row(db, paid_only.order_no).status == "paid"
    assert service.auto_confirm(db, settings, now=now + timedelta(hours=2)) == 1
    assert order_row(db, not_yet.order_no).status == "completed"
    # the consumer can no longer confirm
    r = api.post(f"/api/v1/orders/{due.order_no}/confirm-receipt", as_=world.tokens["consumer"])
    assert r.status_code == 409


def test_auto_confirm_with_several_workers_confirms_each_order_once(
    world: Any, db: Any, settings: Any
) -> None:
    orders = [
        orm_goods_order(world, status="shipped", lines=1, shipped_ago=timedelta(days=8))
        for _ in range(12)
    ]
    seen: list[str] = []
    lock = threading.Lock()

    def listener(session: Any, event: events.ParcelReceived) -> None:
        with lock:
            seen.append(event.order_no)

    moved: list[int] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        moved.append(service.auto_confirm(db, settings, batch=5))
        moved.append(service.auto_confirm(db, settings, batch=5))
        moved.append(service.auto_confirm(db, settings, batch=5))

    with wiring.extra_in_transaction(events.ParcelReceived, listener):
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(moved) == 12
    assert sorted(seen) == sorted(o.order_no for o in orders)
    for o in orders:
        assert order_row(db, o.order_no).status == "completed"
