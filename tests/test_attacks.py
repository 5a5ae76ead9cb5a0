"""Issue 12, "hold under attack": each finding of the adversarial review, tried again the way an
attacker tried it, against a live server (uvicorn subprocess) on SQLite and on PostgreSQL (two API
processes; throttles in Redis when ``O2O_TEST_REDIS_URL`` is set).

The server believes ``X-Forwarded-For`` from 127.0.0.1 (``O2O_TRUSTED_PROXIES``), so a test
plays any number of client addresses; each test uses addresses of its own. The figures the
closing note asks for are printed (``pytest -s``): 5xx count and p50 of an unrelated request
during the sign-in flood, attempts evaluated against the limit under concurrency.
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from o2o import worker
from o2o.accounts import service as accounts
from o2o.accounts.models import User, UserSession
from o2o.config import Settings
from o2o.merchants.models import Membership
from o2o.payments.models import PaymentNotification
from o2o.payments.notification_log import event_json
from o2o.payments.providers import EVENT_SUCCEEDED, PaymentEvent
from o2o.security import TOKEN_ALGORITHM, TOKEN_AUDIENCE
from o2o.timeutil import utcnow
from tests.checkout_support import make_deal
from tests.live_support import LiveServer, at_once, serve
from tests.support import PASSWORD, next_phone

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("attacks")]

SECRET = "attack-test-secret-" + "q" * 40
LOGIN_LIMIT = 5  # O2O_LOGIN_MAX_FAILURES (default)
ADDRESS_LIMIT = 20
STAFF_LIMIT = 10  # O2O_REDEMPTION_STAFF_FAILURES_PER_MINUTE (default)
STORE_LIMIT = 15
ENV = {
    "O2O_TRUSTED_PROXIES": "127.0.0.1",
    "O2O_LOGIN_MAX_FAILURES_PER_ADDRESS": str(ADDRESS_LIMIT),
    "O2O_LOGIN_DELAY_BASE_SECONDS": "0.05",
    "O2O_LOGIN_DELAY_MAX_SECONDS": "0.4",
    "O2O_REDEMPTION_STORE_FAILURES_PER_MINUTE": str(STORE_LIMIT),
    # A busy CI box hashes slowly: let sign-ins queue long enough that the flood tests never see
    # the 503 the gate gives past its wait (tests/test_attack_units.py tests that 503).
    "O2O_PASSWORD_HASH_WAIT_SECONDS": "30",
}

_addresses = itertools.count(random.randint(1, 200) * 250)


def new_address() -> str:
    """A client address no other test uses (documentation ranges)."""
    n = next(_addresses)
    return f"198.{18 + n // 65025 % 2}.{n // 255 % 255}.{n % 255 + 1}"


def xff(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    yield from serve(
        request.param, tmp_path_factory.mktemp(f"attack-{request.param}"), secret=SECRET, env=ENV
    )


def register(live: LiveServer, http: httpx.Client, phone: str | None = None) -> str:
    phone = phone or next_phone()
    r = http.post(
        "/api/v1/auth/register",
        json={"phone": phone, "password": PASSWORD, "name": "住户"},
        headers=xff(new_address()),
    )
    assert r.status_code == 201, r.text
    return phone


def sign_in(http: httpx.Client, phone: str, password: str = PASSWORD, **kw: Any) -> httpx.Response:
    address = kw.pop("address", None) or new_address()
    return http.post(
        "/api/v1/auth/token", json={"phone": phone, "password": password}, headers=xff(address)
    )


def token_of(http: httpx.Client, phone: str, password: str = PASSWORD) -> str:
    r = sign_in(http, phone, password)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- finding 1: a sign-in flood takes the server down ------------------------------------------


class Watch:
    """While an attack runs: an unrelated GET every 50 ms, and worker sweeps in this process."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.unrelated: list[tuple[int, float]] = []
        self.sweeps: list[dict[str, int]] = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._get), threading.Thread(target=self._sweep)]

    def _get(self) -> None:
        with self.live.client() as http:
            while not self.done.is_set():
                started = time.perf_counter()
                r = http.get("/api/v1/categories")
                self.unrelated.append((r.status_code, time.perf_counter() - started))
                self.done.wait(0.05)

    def _sweep(self) -> None:
        settings = Settings(
            database_url="sqlite://", secret_key=SECRET, demo=False, sandbox_payments=True
        )
        while not self.done.is_set():
            self.sweeps.append(worker.run_once(self.live.db, settings))
            self.done.wait(0.5)

    def __enter__(self) -> Watch:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.done.set()
        for t in self.threads:
            t.join()

    def p50(self) -> float:
        return statistics.median(t for _, t in self.unrelated)

    def check(self) -> None:
        assert self.unrelated and {s for s, _ in self.unrelated} == {200}, self.unrelated
        assert self.p50() < 1.0, sorted(t for _, t in self.unrelated)
        assert self.sweeps and all(v >= 0 for r in self.sweeps for v in r.values()), self.sweeps
        assert "Traceback" not in self.live.server_log()


def flood(live: LiveServer, addresses: list[str], threads: int) -> tuple[Counter[int], float]:
    """One sign-in per address in ``addresses`` (random phones, wrong passwords) from
    ``threads`` threads; the status codes and the seconds it took."""
    statuses: list[httpx.Response] = []
    lock = threading.Lock()
    todo = iter(addresses)

    def run(_i: int, http: httpx.Client) -> None:
        while True:
            with lock:
                address = next(todo, None)
            if address is None:
                return
            statuses.append(
                http.post(
                    f"{live.base}/api/v1/auth/token",
                    json={"phone": next_phone(), "password": "guess-" + secrets.token_hex(4)},
                    headers=xff(address),
                )
            )

    started = time.perf_counter()
    at_once(threads, run)
    took = time.perf_counter() - started
    for r in statuses:
        if r.status_code >= 500:  # only ever "busy, come back": never a 500
            assert r.status_code == 503 and r.json()["code"] == "sign_in_busy", r.text
            assert int(r.headers["Retry-After"]) > 0
    assert len(statuses) == len(addresses)
    return Counter(r.status_code for r in statuses), took


def test_a_sign_in_flood_leaves_the_server_standing(live: LiveServer) -> None:
    """Was: 240 sign-ins for random phones from 80 threads took every pooled connection (argon2
    ran inside a transaction): 500s, 17.7 s median for an unrelated GET, the worker's job failing.
    Now the same flood (200 sign-ins, 80 threads, one attacker machine): no 5xx at all, the
    unrelated GET stays fast, every worker job succeeds."""
    with Watch(live) as watch:
        counts, took = flood(live, [new_address()] * 200, threads=80)
    fives = sum(n for s, n in counts.items() if s >= 500)
    print(
        f"\n[{live.backend}] sign-in flood: 200 sign-ins from 80 threads in {took:.1f}s"
        f" {dict(counts)}; 5xx: {fives}; unrelated GET /api/v1/categories"
        f" ×{len(watch.unrelated)}: p50 {watch.p50() * 1000:.0f} ms; worker sweeps:"
        f" {len(watch.sweeps)}, none failed"
    )
    assert fives == 0, counts
    # At most the address's limit was evaluated (hashed); the rest refused before hashing.
    assert counts == {401: ADDRESS_LIMIT, 429: 200 - ADDRESS_LIMIT}, counts
    watch.check()


def test_a_distributed_sign_in_flood_is_queued_not_failed(live: LiveServer) -> None:
    """24 sign-ins at once from 24 addresses (no throttle applies: every one is hashed): at most
    a few hashes run at once per process, the rest wait on the event loop (no thread, no
    connection held) — never a 500 (past the gate's wait it would be a 503 with Retry-After);
    the unrelated GET stays fast and the worker is unaffected."""
    with Watch(live) as watch:
        counts, took = flood(live, [new_address() for _ in range(24)], threads=24)
    print(
        f"\n[{live.backend}] distributed flood: 24 sign-ins at once in {took:.1f}s {dict(counts)};"
        f" unrelated GET p50 {watch.p50() * 1000:.0f} ms"
    )
    assert set(counts) <= {401, 503}, counts
    watch.check()


# --- finding 2: throttles outrun by concurrency ------------------------------------------------


def test_fifty_concurrent_wrong_passwords_evaluate_at_most_the_limit(live: LiveServer) -> None:
    """Was: 50 concurrent wrong passwords for one phone → 23 evaluated against a limit of 5."""
    with live.client() as http:
        phone = register(live, http)
    address = new_address()
    responses = at_once(
        50,
        lambda _i, http: http.post(
            f"{live.base}/api/v1/auth/token",
            json={"phone": phone, "password": "wrong-password"},
            headers=xff(address),
        ),
    )
    counts = Counter(r.status_code for r in responses)
    print(f"\n[{live.backend}] 50 concurrent wrong passwords: evaluated {counts[401]}, limit 5")
    assert counts[401] == LOGIN_LIMIT and counts[429] == 50 - LOGIN_LIMIT, counts
    assert {r.json()["code"] for r in responses if r.status_code == 429} == {"login_throttled"}


def test_sixty_concurrent_voucher_guesses_evaluate_at_most_the_limit(live: LiveServer) -> None:
    """Was: 60 concurrent random codes → 15 evaluated against a limit of 10 (failures were
    recorded after the rollback)."""
    url = f"{live.base}/api/v1/merchants/{live.world.a.id}/redemptions"
    store = live.world.a.store_ids[1]
    responses = at_once(
        60,
        lambda _i, http: http.post(
            url,
            json={"code": f"{secrets.randbelow(10**12):012d}", "store_id": store},
            headers=live.headers("owner"),
        ),
    )
    counts = Counter(r.status_code for r in responses)
    print(f"\n[{live.backend}] 60 concurrent voucher guesses: evaluated {counts[404]}, limit 10")
    assert counts[404] == STAFF_LIMIT and counts[429] == 60 - STAFF_LIMIT, counts


# --- finding 3: anyone can lock anyone out; spraying is unlimited ------------------------------


def test_a_strangers_failures_do_not_lock_out_the_owner(live: LiveServer) -> None:
    """Was: five wrong passwords locked a phone for 15 minutes, the operator's too; the right
    password then got 429."""
    with live.client() as http:
        with live.db.transaction(readonly=True) as session:
            operator = session.get(User, live.world.operator_id)
            assert operator is not None
            phone = operator.phone
        stranger = new_address()
        for _ in range(LOGIN_LIMIT + 5):
            sign_in(http, phone, "wrong-password", address=stranger)
        # The stranger is locked out (even with the right password, from there) …
        assert sign_in(http, phone, address=stranger).status_code == 429
        # … the operator, from anywhere else, gets in: a short delay, never a 429.
        started = time.perf_counter()
        r = sign_in(http, phone, address=new_address())
        took = time.perf_counter() - started
        assert r.status_code == 200, r.text
        print(f"\n[{live.backend}] owner after a stranger's 10 failures: 200 in {took:.2f}s")


def test_password_spraying_from_one_address_is_bounded(live: LiveServer) -> None:
    """Was: no limit per client address — one address could try a password on every phone."""
    address = new_address()
    statuses = []
    with live.client() as http:
        for _ in range(ADDRESS_LIMIT + 5):
            statuses.append(sign_in(http, next_phone(), "Password123", address=address).status_code)
        assert statuses == [401] * ADDRESS_LIMIT + [429] * 5, statuses
        # X-Forwarded-For is believed only from trusted proxies: a client cannot pick its key
        # by sending the header through an untrusted hop (here: the header's left-most entries,
        # written by the client, are ignored; the proxy-appended last one counts).
        r = http.post(
            "/api/v1/auth/token",
            json={"phone": next_phone(), "password": "Password123"},
            headers={"X-Forwarded-For": f"{new_address()}, {address}"},
        )
        assert r.status_code == 429


def test_one_stores_guessing_does_not_stop_another_store(live: LiveServer) -> None:
    """Was: four staff exhausted the merchant's redemption limit and stopped redemption at every
    store."""
    world = live.world
    url = f"{live.base}/api/v1/merchants/{world.b.id}/redemptions"
    guessing_store, other_store = world.b.store_ids
    statuses = []
    with live.client() as http:
        for role in ("other_clerk", "other_manager", "other_owner"):
            for _ in range(STAFF_LIMIT):
                r = http.post(
                    url,
                    json={"code": f"{secrets.randbelow(10**12):012d}", "store_id": guessing_store},
                    headers=live.headers(role),
                )
                statuses.append(r.status_code)
        assert statuses.count(404) == STORE_LIMIT and statuses[-1] == 429, statuses
        # The other store still works for a manager who has not guessed there.
        deal = make_deal(live.db, world.b.id, world.category_id, [other_store])
        code = buy_voucher(live, http, deal.listing_id)
        token = staff_token(live, http, world.b.id, "manager", [other_store])
        r = http.post(url, json={"code": code, "store_id": other_store}, headers=bearer(token))
        assert r.status_code == 200, r.text


def buy_voucher(live: LiveServer, http: httpx.Client, listing_id: int) -> str:
    h = live.headers("consumer")
    r = http.post(
        "/api/v1/checkout", json={"items": [{"listing_id": listing_id, "quantity": 1}]}, headers=h
    )
    assert r.status_code == 201, r.text
    order_no, payment_no = r.json()["orders"][0]["order_no"], r.json()["payment"]["payment_no"]
    r = http.post(f"/api/v1/payments/{payment_no}/pay", json={"provider": "sandbox"}, headers=h)
    assert r.status_code == 200, r.text
    assert http.post(
        f"/sandbox/cashier/{payment_no}", json={"result": "success"}, headers=h
    ).is_success
    return http.get(f"/api/v1/orders/{order_no}", headers=h).json()["vouchers"][0]["code"]


def staff_token(
    live: LiveServer, http: httpx.Client, merchant_id: int, role: str, store_ids: list[int]
) -> str:
    """A new user invited by the merchant's owner, who accepts: a fresh member's token."""
    phone = register(live, http)
    token = token_of(http, phone)
    owner = "owner" if merchant_id == live.world.a.id else "other_owner"
    r = http.post(
        f"/api/v1/merchants/{merchant_id}/invitations",
        json={"phone": phone, "role": role, "store_ids": store_ids},
        headers=live.headers(owner),
    )
    assert r.status_code == 201, r.text
    r = http.post(f"/api/v1/me/invitations/{r.json()['id']}/accept", headers=bearer(token))
    assert r.status_code == 200, r.text
    return token


# --- finding 4: sessions cannot be revoked -----------------------------------------------------


def page_sign_in(http: httpx.Client, phone: str, password: str = PASSWORD) -> str:
    """Sign in through the login form; the session cookie's value."""
    page = http.get("/login")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = http.post(
        "/login",
        data={"phone": phone, "password": password, "csrf_token": csrf},
        headers=xff(new_address()),
    )
    assert r.status_code == 303, r.text
    return http.cookies["o2o_session"]


def cookie_works(live: LiveServer, cookie: str) -> bool:
    with live.client(cookies={"o2o_session": cookie}) as http:
        return http.get("/me").status_code == 200


def test_sign_out_revokes_the_cookie_and_the_token(live: LiveServer) -> None:
    """Was: the page cookie still worked 14 days after 退出."""
    with live.client() as http:
        phone = register(live, http)
        token = token_of(http, phone)
        cookie = page_sign_in(http, phone)
        assert cookie_works(live, cookie)
        csrf = http.get("/me").text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        assert http.post("/logout", data={"csrf_token": csrf}).status_code == 303
        assert not cookie_works(live, cookie)  # a copy of the cookie is worth nothing now
        assert http.get("/api/v1/me", headers=bearer(token)).status_code == 200
        assert http.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
        r = http.get("/api/v1/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["code"] == "session_revoked"


def test_password_change_and_reset_revoke_every_other_session(live: LiveServer) -> None:
    """Was: after a password reset old bearer tokens still worked; there was no password change."""
    with live.client() as http:
        phone = register(live, http)
        kept, other = token_of(http, phone), token_of(http, phone)
        cookie = page_sign_in(http, phone)
        r = http.put(
            "/api/v1/me/password",
            json={"current_password": "not-it", "new_password": "new-password-1"},
            headers=bearer(kept),
        )
        assert r.status_code == 422 and r.json()["code"] == "wrong_password"
        r = http.put(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": "new-password-1"},
            headers=bearer(kept),
        )
        assert r.status_code == 204, r.text
        assert http.get("/api/v1/me", headers=bearer(kept)).status_code == 200
        assert http.get("/api/v1/me", headers=bearer(other)).status_code == 401
        assert not cookie_works(live, cookie)
        assert sign_in(http, phone).status_code == 401
        fresh = token_of(http, phone, "new-password-1")
        # A reset (the operator's `o2o admin create --phone … --password …`): every session ends.
        with live.db.transaction() as session:
            accounts.create_admin(session, phone=phone, password="reset-password-1")
        for token in (kept, fresh):
            assert http.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_the_password_page_changes_the_password(live: LiveServer) -> None:
    with live.client() as http:
        phone = register(live, http)
        token = token_of(http, phone)
        page_sign_in(http, phone)
        form = http.get("/me/password")
        assert form.status_code == 200 and "修改密码" in form.text
        csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        data = {
            "csrf_token": csrf,
            "current_password": PASSWORD,
            "new_password": "page-password-1",
            "new_password_confirm": "page-password-2",
        }
        r = http.post("/me/password", data=data)
        assert r.status_code == 422 and "两次输入的新密码不一致" in r.text
        r = http.post("/me/password", data={**data, "new_password_confirm": "page-password-1"})
        assert r.status_code == 303 and r.headers["location"] == "/me"
        assert "密码已修改" in http.get("/me").text  # this page session stays signed in
        assert http.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_sign_out_everywhere(live: LiveServer) -> None:
    with live.client() as http:
        phone = register(live, http)
        tokens = [token_of(http, phone) for _ in range(2)]
        cookie = page_sign_in(http, phone)
        user_id = http.get("/api/v1/me", headers=bearer(tokens[0])).json()["id"]
        # Not for anybody but operators.
        r = http.delete(f"/api/v1/admin/users/{user_id}/sessions", headers=bearer(tokens[0]))
        assert r.status_code == 403
        r = http.delete(f"/api/v1/admin/users/{user_id}/sessions", headers=live.headers("operator"))
        assert r.status_code == 204
        assert all(http.get("/api/v1/me", headers=bearer(t)).status_code == 401 for t in tokens)
        assert not cookie_works(live, cookie)
        with live.db.transaction(readonly=True) as session:
            left = session.scalar(select(func.count()).where(UserSession.user_id == user_id))
        assert left == 0
        # The user's own 退出所有设备 (API).
        token = token_of(http, phone)
        assert http.delete("/api/v1/me/sessions", headers=bearer(token)).status_code == 204
        assert http.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_tokens_need_exp_aud_and_a_strict_sub(live: LiveServer) -> None:
    """Was: JWTs without ``exp`` were accepted; ``sub`` was read with ``int()`` (" 1 ")."""
    with live.client() as http:
        phone = register(live, http)
        good = jwt.decode(
            token_of(http, phone), SECRET, algorithms=[TOKEN_ALGORITHM], audience=TOKEN_AUDIENCE
        )
        assert http.get("/api/v1/me", headers=bearer(forge(good))).status_code == 200
        for broken in (
            {k: v for k, v in good.items() if k != "exp"},
            {k: v for k, v in good.items() if k != "aud"},
            {k: v for k, v in good.items() if k != "sid"},
            {**good, "sub": f" {good['sub']} "},
            {**good, "sub": "１" * len(good["sub"])},
            {**good, "aud": "someone-else"},
        ):
            r = http.get("/api/v1/me", headers=bearer(forge(broken)))
            assert r.status_code == 401, broken


def forge(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm=TOKEN_ALGORITHM)


# --- finding 6: look-alike phone numbers; finding 7: loose input -------------------------------


def test_look_alike_digits_are_refused(live: LiveServer) -> None:
    with live.client() as http:
        for phone in ("1390000000१", "１３９００００００01", "139000000O1"):
            r = http.post(
                "/api/v1/auth/register",
                json={"phone": phone, "password": PASSWORD, "name": "仿冒"},
                headers=xff(new_address()),
            )
            assert r.status_code == 422, (phone, r.text)
        deal = make_deal(live.db, live.world.a.id, live.world.category_id, live.world.a.store_ids)
        address = {
            "name": "收件人",
            "phone": "1390000000١",
            "province": "广东省",
            "city": "深圳市",
            "district": "南山区",
            "detail": "科苑路 1 号",
        }
        r = http.post(
            "/api/v1/checkout",
            json={
                "items": [{"listing_id": deal.listing_id, "quantity": 1}],
                "shipping_address": address,
            },
            headers=live.headers("consumer"),
        )
        assert r.status_code == 422 and "shipping_address.phone" in r.text
    with live.db.transaction(readonly=True) as session:
        phones = session.scalars(select(User.phone)).all()
    assert all(p.isascii() and p.isdigit() for p in phones)


@pytest.mark.parametrize(
    "quantity", ["1", True, 1.0, "１"], ids=["string", "true", "float", "fullwidth"]
)
def test_quantities_are_strict_integers(live: LiveServer, quantity: Any) -> None:
    deal = make_deal(live.db, live.world.a.id, live.world.category_id, live.world.a.store_ids)
    with live.client() as http:
        r = http.post(
            "/api/v1/checkout",
            json={"items": [{"listing_id": deal.listing_id, "quantity": quantity}]},
            headers=live.headers("consumer"),
        )
        assert r.status_code == 422, r.text


def test_null_in_a_patch_is_a_validation_error(live: LiveServer) -> None:
    """Was: explicit null reached the database and came back 409."""
    world = live.world
    store = world.a.store_ids[0]
    cases = [
        (f"/api/v1/merchants/{world.a.id}", {"name": None}, "owner"),
        (f"/api/v1/merchants/{world.a.id}/stores/{store}", {"is_active": None}, "owner"),
        (f"/api/v1/merchants/{world.a.id}/stores/{store}", {"lat": None}, "owner"),
        (f"/api/v1/admin/categories/{world.category_id}", {"commission_bp": None}, "operator"),
        (f"/api/v1/admin/categories/{world.category_id}", {"commission_bp": "600"}, "operator"),
    ]
    with live.client() as http:
        for url, body, role in cases:
            r = http.patch(url, json=body, headers=live.headers(role))
            assert r.status_code == 422, (url, body, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        # Leaving a field out still means "unchanged".
        r = http.patch(
            f"/api/v1/merchants/{world.a.id}/stores/{store}",
            json={"opening_hours": "10:00-22:00"},
            headers=live.headers("owner"),
        )
        assert r.status_code == 200 and r.json()["is_active"] is True


@pytest.mark.parametrize(
    "name",
    ["店\u200b主", "\u202egnp.exe", "名\u2066字", "名\x07字", "两\n行", "\ufeff名字"],
    ids=["zero-width", "rlo", "isolate", "bell", "newline", "bom"],
)
def test_invisible_and_direction_characters_are_refused_in_names(
    live: LiveServer, name: str
) -> None:
    with live.client() as http:
        r = http.post(
            "/api/v1/auth/register",
            json={"phone": next_phone(), "password": PASSWORD, "name": name},
            headers=xff(new_address()),
        )
        assert r.status_code == 422, r.text
        r = http.patch(
            f"/api/v1/merchants/{live.world.a.id}",
            json={"name": name},
            headers=live.headers("owner"),
        )
        assert r.status_code == 422, r.text


# --- finding 8: consent --------------------------------------------------------------------------


def test_nobody_becomes_owner_without_accepting(live: LiveServer) -> None:
    """Was: an owner could make any registered user an owner or staff member by phone number;
    the fuzzing run ended with a merchant owned by a stranger and the original owner removed."""
    world = live.world
    mid = world.a.id
    with live.client() as http:
        phone = register(live, http)
        token = token_of(http, phone)
        r = http.post(
            f"/api/v1/merchants/{mid}/invitations",
            json={"phone": phone, "role": "owner"},
            headers=live.headers("owner"),
        )
        assert r.status_code == 201 and r.json()["status"] == "pending"
        invitation = r.json()["id"]
        assert http.get("/api/v1/me", headers=bearer(token)).json()["memberships"] == []
        # Nobody else can answer it; the invited user declines.
        r = http.post(
            f"/api/v1/me/invitations/{invitation}/accept", headers=live.headers("consumer")
        )
        assert r.status_code == 404
        r = http.post(f"/api/v1/me/invitations/{invitation}/decline", headers=bearer(token))
        assert r.status_code == 204
        r = http.post(f"/api/v1/me/invitations/{invitation}/accept", headers=bearer(token))
        assert r.status_code == 409
        assert http.get("/api/v1/me", headers=bearer(token)).json()["memberships"] == []
        # The last owner cannot be removed …
        r = http.delete(
            f"/api/v1/merchants/{mid}/staff/{world.a.owner_id}", headers=live.headers("owner")
        )
        assert r.status_code == 409 and r.json()["code"] == "last_owner"
        # … nor can two owners remove each other at the same moment.
        second = staff_token(live, http, mid, "owner", [])
        second_id = http.get("/api/v1/me", headers=bearer(second)).json()["id"]
    responses = at_once(
        2,
        lambda i, client: client.delete(
            f"{live.base}/api/v1/merchants/{mid}/staff/{second_id if i == 0 else world.a.owner_id}",
            headers=live.headers("owner") if i == 0 else bearer(second),
        ),
    )
    assert sorted(r.status_code for r in responses) in ([204, 403], [204, 409]), [
        r.text for r in responses
    ]
    with live.db.transaction(readonly=True) as session:
        owners = session.scalar(
            select(func.count()).where(Membership.merchant_id == mid, Membership.role == "owner")
        )
    assert owners == 1


# --- security headers and HEAD -------------------------------------------------------------------


def test_api_responses_carry_security_headers_and_head_is_answered(live: LiveServer) -> None:
    with live.client() as http:
        for path in ("/api/v1/categories", "/api/v1/me", "/openapi.json", "/healthz"):
            r = http.get(path)
            assert r.headers["X-Content-Type-Options"] == "nosniff", path
            assert r.headers["X-Frame-Options"] == "DENY", path
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], path
            assert r.headers["Cache-Control"] == "no-store", path
        for path in ("/api/v1/categories", "/healthz", "/", "/login", "/openapi.json"):
            get, head = http.get(path), http.head(path)
            assert head.status_code == get.status_code == 200, path
            assert head.content == b"" and head.headers["content-length"] == str(len(get.content))
        assert http.head("/api/v1/no-such-thing").status_code == 404


def test_session_rows_expire_and_are_purged(live: LiveServer) -> None:
    with live.db.transaction() as session:
        sid = accounts.start_session(session, live.world.consumer_id, kind="api", ttl_seconds=60)
        session.execute(
            UserSession.__table__.update()
            .where(UserSession.id == sid)
            .values(expires_at=utcnow().replace(year=2000))
        )
    with live.db.transaction() as session:
        assert accounts.purge_expired_sessions(session) >= 1
        assert session.get(UserSession, sid) is None


# --- finding 5: unauthenticated database growth --------------------------------------------------


def rejected_bytes(live: LiveServer) -> tuple[int, int]:
    """(rows, bytes of body and headers) of the rejected notifications kept."""
    with live.db.transaction(readonly=True) as session:
        rows = session.scalars(
            select(PaymentNotification).where(PaymentNotification.result == "rejected")
        ).all()
        return len(rows), sum(len(r.body) + len(json.dumps(r.headers)) for r in rows)


def test_junk_notifications_cannot_fill_the_database(live: LiveServer) -> None:
    """Was: every rejected notification body up to 64 KiB was stored; 20 junk POSTs added 1.3 MB."""
    rows_before, bytes_before = rejected_bytes(live)
    junk = secrets.token_hex(32 * 1024)  # 64 KiB
    with live.client() as http:
        for _ in range(20):  # the same junk again and again …
            r = http.post("/api/v1/payments/notify/sandbox", content=junk)
            assert r.status_code in (400, 401), r.text
        rows, stored = rejected_bytes(live)
        assert rows - rows_before == 1
        with live.db.transaction(readonly=True) as session:
            repeats = session.scalar(
                select(func.max(PaymentNotification.repeat_count)).where(
                    PaymentNotification.result == "rejected"
                )
            )
        assert repeats == 20
        for _ in range(20):  # … and 20 different ones
            r = http.post(
                "/api/v1/payments/notify/sandbox",
                content=secrets.token_hex(32 * 1024),
                headers={f"X-Junk-{n}": "x" * 4000 for n in range(30)},
            )
            assert r.status_code in (400, 401), r.text
    rows, stored = rejected_bytes(live)
    added = stored - bytes_before
    print(
        f"\n[{live.backend}] 40 junk notifications (64 KiB each): {rows - rows_before} rows,"
        f" {added} bytes kept (was: 1.3 MB for 20)"
    )
    assert rows - rows_before == 21
    assert added < 21 * 4 * 1024, added


# --- finding 9: notifications stored but never applied ---------------------------------------


def test_a_notification_left_received_by_a_crash_is_applied_by_the_worker(
    live: LiveServer,
) -> None:
    """Was: a notification stored but not applied before a crash stayed ``received`` forever.
    Here the server stored it and died before applying it (the row as the crash leaves it);
    the worker's sweep applies it, once."""
    deal = make_deal(live.db, live.world.a.id, live.world.category_id, live.world.a.store_ids)
    h = live.headers("consumer")
    with live.client() as http:
        r = http.post(
            "/api/v1/checkout",
            json={"items": [{"listing_id": deal.listing_id, "quantity": 1}]},
            headers=h,
        )
        assert r.status_code == 201, r.text
        order_no, payment = r.json()["orders"][0]["order_no"], r.json()["payment"]
        r = http.post(
            f"/api/v1/payments/{payment['payment_no']}/pay", json={"provider": "sandbox"}, headers=h
        )
        assert r.status_code == 200, r.text
    event = PaymentEvent(
        provider="sandbox",
        payment_no=payment["payment_no"],
        status=EVENT_SUCCEEDED,
        amount_fen=payment["amount_fen"],
        provider_txn_id="SBX-CRASH-" + secrets.token_hex(4),
        paid_at=utcnow(),
    )
    with live.db.transaction() as session:
        stuck = PaymentNotification(
            provider="sandbox",
            body="{}",
            verified=True,
            result="received",
            payment_no=event.payment_no,
            event_status=event.status,
            amount_fen=event.amount_fen,
            event=event_json(event),
            received_at=utcnow() - timedelta(minutes=5),
        )
        session.add(stuck)
        session.flush()
        stuck_id = stuck.id
    settings = Settings(
        database_url="sqlite://", secret_key=SECRET, demo=False, sandbox_payments=True
    )
    results = [worker.run_once(live.db, settings) for _ in range(2)]
    assert [r["notification_replay"] for r in results] == [1, 0]  # once
    with live.db.transaction(readonly=True) as session:
        record = session.get(PaymentNotification, stuck_id)
        assert record is not None and record.result == "applied", record.detail
    with live.client() as http:
        order = http.get(f"/api/v1/orders/{order_no}", headers=h).json()
    assert order["status"] == "paid" and len(order["vouchers"]) == 1
