"""Inventory as one mechanism (DESIGN.md law 1: no oversell), on SQLite and PostgreSQL.

Unit checks of each move, a hypothesis property test that drives random sequences against a
simple model, and a concurrency test that hammers one item from many connections.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from o2o.db import Database, make_engine
from o2o.errors import Conflict, ValidationFailed
from o2o.inventory import service as inventory
from o2o.inventory.models import InventoryAdjustment, InventoryHold
from o2o.inventory.service import Levels, OutOfStock


def new_item(db: Database, total: int, kind: str = "sku") -> int:
    with db.transaction() as session:
        return inventory.create_item(session, kind, total).id


def levels(db: Database, item_id: int) -> Levels:
    with db.transaction(readonly=True) as session:
        return inventory.levels(session, item_id)


def test_hold_commit_release_give_back(db: Database) -> None:
    item = new_item(db, 10)
    with db.transaction() as s:
        h1 = inventory.hold(s, item, 3, ref="order_line:1").id
        h2 = inventory.hold(s, item, 2, ref="order_line:2").id
    assert levels(db, item) == Levels(total=10, available=5, held=5, sold=0)

    with db.transaction() as s:
        assert inventory.commit(s, h1) is True
        assert inventory.commit(s, h1) is False  # idempotent: a replay moves nothing
        assert inventory.release(s, h2) is True
        assert inventory.release(s, h2) is False
        assert inventory.commit(s, h2) is False  # released holds cannot be sold
    assert levels(db, item) == Levels(total=10, available=7, held=0, sold=3)

    with db.transaction() as s:
        assert inventory.give_back(s, h1, 1) is True  # partial return splits the hold
        assert inventory.give_back(s, h1) is True
        assert inventory.give_back(s, h1) is False
        assert inventory.give_back(s, h2) is False  # never committed
    assert levels(db, item) == Levels(total=10, available=10, held=0, sold=0)
    with db.transaction(readonly=True) as s:
        statuses = sorted((h.status, h.quantity) for h in inventory.holds_for(s, "order_line:1"))
    assert statuses == [("returned", 1), ("returned", 2)]


def test_hold_refuses_more_than_available_and_changes_nothing(db: Database) -> None:
    item = new_item(db, 2)
    with pytest.raises(OutOfStock) as exc, db.transaction() as s:
        inventory.hold(s, item, 3, label="三体 平装")
    assert exc.value.status == 409 and "三体 平装" in exc.value.detail
    for bad in (0, -1, inventory.MAX_UNITS + 1):
        with pytest.raises(ValidationFailed), db.transaction() as s:
            inventory.hold(s, item, bad)
    assert levels(db, item) == Levels(2, 2, 0, 0)
    with db.transaction(readonly=True) as s:
        assert s.scalars(select(InventoryHold)).all() == []


def test_adjust_is_audited_and_never_goes_below_zero(db: Database, world) -> None:
    item = new_item(db, 5)
    with db.transaction() as s:
        inventory.hold(s, item, 4)
        after = inventory.adjust(s, item, 10, actor_user_id=world.a.owner_id, reason="到货")
    assert after == Levels(total=15, available=11, held=4, sold=0)
    with pytest.raises(Conflict) as exc, db.transaction() as s:
        inventory.adjust(s, item, -12, actor_user_id=world.a.owner_id, reason="盘亏")
    assert exc.value.code == "stock_adjust_below_zero"
    with pytest.raises(ValidationFailed), db.transaction() as s:
        inventory.adjust(s, item, 0, actor_user_id=None)
    with db.transaction() as s:
        assert inventory.set_total(s, item, 15, actor_user_id=None) == after  # no-op, no audit
        inventory.set_available(s, item, 3, actor_user_id=world.a.manager_id, reason="盘点")
    assert levels(db, item) == Levels(total=7, available=3, held=4, sold=0)
    with db.transaction(readonly=True) as s:
        audit = s.scalars(select(InventoryAdjustment).order_by(InventoryAdjustment.id)).all()
    assert [(a.delta, a.total_after, a.actor_user_id, a.reason) for a in audit] == [
        (10, 15, world.a.owner_id, "到货"),
        (-8, 7, world.a.manager_id, "盘点"),
    ]


def test_create_items_keeps_order(db: Database) -> None:
    with db.transaction() as s:
        ids = inventory.create_items(s, "slot", [3, 1, 4, 1, 5])
        by_id = inventory.levels_by_item(s, ids)
    assert [by_id[i].total for i in ids] == [3, 1, 4, 1, 5]
    assert all(by_id[i].available == by_id[i].total for i in ids)


# --- property test: random sequences against a model ---------------------------------------


@dataclass
class Model:
    total: int
    available: int
    held: int = 0
    sold: int = 0
    holds: dict[int, list] = field(default_factory=dict)  # id -> [status, quantity]


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("hold"), st.integers(min_value=-1, max_value=12)),
        st.tuples(st.just("release"), st.integers(min_value=0, max_value=30)),
        st.tuples(st.just("commit"), st.integers(min_value=0, max_value=30)),
        st.tuples(
            st.just("give_back"),
            st.integers(min_value=0, max_value=30),
            st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
        ),
        st.tuples(st.just("adjust"), st.integers(min_value=-15, max_value=15)),
        st.tuples(st.just("set_available"), st.integers(min_value=0, max_value=20)),
    ),
    min_size=1,
    max_size=30,
)


def _apply(db: Database, item: int, model: Model, op: tuple) -> None:
    """Run one operation in its own transaction and the same operation on the model."""
    name = op[0]
    hold_ids = sorted(model.holds)
    moves_a_hold = name in ("release", "commit", "give_back")
    pick = hold_ids[op[1] % len(hold_ids)] if hold_ids and moves_a_hold else None
    if name == "hold":
        n = op[1]
        if n < 1:
            with pytest.raises(ValidationFailed), db.transaction() as s:
                inventory.hold(s, item, n)
        elif n > model.available:
            with pytest.raises(OutOfStock), db.transaction() as s:
                inventory.hold(s, item, n)
        else:
            with db.transaction() as s:
                hold_id = inventory.hold(s, item, n).id
            model.available -= n
            model.held += n
            model.holds[hold_id] = ["held", n]
    elif name in ("release", "commit"):
        if pick is None:
            return
        with db.transaction() as s:
            moved = getattr(inventory, name)(s, pick)
        state = model.holds[pick]
        assert moved == (state[0] == "held")
        if moved:
            state[0] = "released" if name == "release" else "committed"
            model.held -= state[1]
            if name == "release":
                model.available += state[1]
            else:
                model.sold += state[1]
    elif name == "give_back":
        if pick is None:
            return
        qty = op[2]
        with db.transaction() as s:
            moved = inventory.give_back(s, pick, qty)
        state = model.holds[pick]
        assert moved == (state[0] == "committed")
        if moved:
            back = state[1] if qty is None or qty >= state[1] else qty
            if back == state[1]:
                state[0] = "returned"
            else:
                state[1] -= back
            model.sold -= back
            model.available += back
    elif name == "adjust":
        delta = op[1]
        if delta == 0:
            with pytest.raises(ValidationFailed), db.transaction() as s:
                inventory.adjust(s, item, delta, actor_user_id=None)
        elif model.available + delta < 0:
            with pytest.raises(Conflict), db.transaction() as s:
                inventory.adjust(s, item, delta, actor_user_id=None, reason="盘点")
        else:
            with db.transaction() as s:
                inventory.adjust(s, item, delta, actor_user_id=None, reason="盘点")
            model.available += delta
            model.total += delta
    elif name == "set_available":
        with db.transaction() as s:
            inventory.set_available(s, item, op[1], actor_user_id=None)
        model.total += op[1] - model.available
        model.available = op[1]


@pytest.fixture
def property_db(db_url: str) -> Iterator[Database]:
    database = Database.from_url(db_url)
    yield database
    database.dispose()


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(start=st.integers(min_value=0, max_value=20), ops=OPS)
def test_units_always_add_up(property_db: Database, start: int, ops: list[tuple]) -> None:
    db = property_db
    item = new_item(db, start)
    model = Model(total=start, available=start)
    for op in ops:
        _apply(db, item, model, op)
        got = levels(db, item)
        assert got.available + got.held + got.sold == got.total
        assert got.available >= 0 and got.held >= 0 and got.sold >= 0
        assert got == Levels(model.total, model.available, model.held, model.sold), op
    # Every hold's recorded status and size agree with the model too.
    with db.transaction(readonly=True) as s:
        rows = s.scalars(select(InventoryHold).where(InventoryHold.item_id == item)).all()
    stored = {h.id: [h.status, h.quantity] for h in rows}
    for hold_id, state in model.holds.items():
        assert stored[hold_id] == state
    by_status: dict[str, int] = {}
    for h in rows:
        by_status[h.status] = by_status.get(h.status, 0) + h.quantity
    assert by_status.get("held", 0) == model.held
    assert by_status.get("committed", 0) == model.sold


# --- concurrency: many connections, one item -----------------------------------------------

THREADS = 40
HOLDS_PER_THREAD = 5
STOCK = 50


def _hammer(db_url: str, work) -> list:  # type: ignore[no-untyped-def]
    """Run ``work(db, thread_no)`` in THREADS threads, each on its own connection."""
    db = Database(make_engine(db_url, pool_size=THREADS))
    results: list = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def run(n: int) -> None:
        try:
            barrier.wait()
            out = work(db, n)
            with lock:
                results.extend(out)
        except BaseException as exc:  # surfaced below; a thread must never swallow a failure
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    db.dispose()
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.mark.slow
def test_many_connections_never_oversell_one_item(db_url: str, db: Database) -> None:
    item = new_item(db, STOCK)

    def work(database: Database, _n: int) -> list[int]:
        won = []
        for _ in range(HOLDS_PER_THREAD):
            try:
                with database.transaction() as s:
                    won.append(inventory.hold(s, item, 1, ref="race").id)
            except OutOfStock:
                pass
        return won

    won = _hammer(db_url, work)
    assert len(won) == STOCK == len(set(won))
    assert levels(db, item) == Levels(total=STOCK, available=0, held=STOCK, sold=0)
    with db.transaction(readonly=True) as s:
        assert sum(h.quantity for h in inventory.holds_for(s, "race")) == STOCK


@pytest.mark.slow
def test_concurrent_mixed_moves_keep_units_consistent(db_url: str, db: Database) -> None:
    """Holds of 1–3 units race with releases, commits and returns of other threads' holds."""
    item = new_item(db, STOCK)

    def work(database: Database, n: int) -> list[tuple[int, int]]:
        rng = random.Random(n)
        mine: list[tuple[int, int]] = []
        for _ in range(HOLDS_PER_THREAD):
            qty = rng.randint(1, 3)
            try:
                with database.transaction() as s:
                    mine.append((inventory.hold(s, item, qty).id, qty))
            except OutOfStock:
                continue
            with database.transaction() as s:
                hold_id = mine[-1][0]
                move = rng.choice(["release", "commit", "commit_and_return", "keep"])
                if move == "release":
                    inventory.release(s, hold_id)
                elif move == "commit":
                    inventory.commit(s, hold_id)
                elif move == "commit_and_return":
                    inventory.commit(s, hold_id)
                    inventory.give_back(s, hold_id)
        return mine

    _hammer(db_url, work)
    got = levels(db, item)
    assert got.total == STOCK and got.available >= 0
    assert got.available + got.held + got.sold == STOCK
    with db.transaction(readonly=True) as s:
        rows = s.scalars(select(InventoryHold).where(InventoryHold.item_id == item)).all()
    assert sum(h.quantity for h in rows if h.status == "held") == got.held
    assert sum(h.quantity for h in rows if h.status == "committed") == got.sold
