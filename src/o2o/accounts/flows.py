"""Sign-in, registration and password change: the use cases that own their transactions.

They are ``async``: a throttled caller waits out its delay on the event loop, and password hashing
runs through the :class:`~o2o.security.PasswordGate` in a thread, with no database transaction
open (each step that needs the database opens a short one of its own).

Sign-in throttling (``o2o.ratelimit``: counted atomically *before* the password is checked):

* per phone and client address — ``login_max_failures`` per window, then 429: a stranger's
  guessing locks out only the stranger's address;
* per client address — ``login_max_failures_per_address``, then 429: password spraying across
  many phones from one address is bounded;
* per phone from everywhere — past ``login_max_failures``, each attempt waits a delay that doubles
  (``login_delay_base_seconds`` up to ``login_delay_max_seconds``) and is then checked: the owner
  with the right password still gets in, only slower, while a distributed guesser is slowed down.

A right password hands back its attempt (address, phone) and clears the phone-and-address key.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from anyio import to_thread

from o2o import ratelimit
from o2o.accounts import service
from o2o.accounts.models import User
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import Conflict, ServiceUnavailable, TooManyRequests, Unauthorized, ValidationFailed
from o2o.security import PasswordGate, issue_token, revoked


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    session_id: str
    token: str


def login_keys(phone: str, address: str) -> list[str]:
    """The throttle keys of one attempt: address, phone at address, phone."""
    return [f"login:addr:{address}", f"login:pair:{phone}:{address}", f"login:acct:{phone}"]


def login_delay(settings: Settings, excess: int) -> float:
    """Seconds an attempt waits when the phone has ``excess`` attempts past the limit."""
    if excess <= 0:
        return 0.0
    doubled = settings.login_delay_base_seconds * 2 ** min(excess - 1, 32)
    return min(settings.login_delay_max_seconds, doubled)


def _throttled(settings: Settings) -> TooManyRequests:
    return TooManyRequests(
        "登录失败次数过多，请稍后再试",
        code="login_throttled",
        headers={"Retry-After": str(settings.login_failure_window_seconds)},
    )


async def check_password(
    db: Database,
    settings: Settings,
    gate: PasswordGate,
    phone: str,
    password: str,
    address: str,
) -> int:
    """The user id if ``password`` is the phone's; throttled and delayed as described above.
    401 (never saying which part was wrong), 429 or 503."""
    counters = ratelimit.counters(db, settings)
    keys = login_keys(phone, address)
    by_address, by_pair, by_phone = await to_thread.run_sync(
        counters.hit, keys, settings.login_failure_window_seconds
    )
    over_address = by_address > settings.login_max_failures_per_address
    over_pair = by_pair > settings.login_max_failures
    if over_address or over_pair:
        # Refused: it counts only against the limit that refused it (a stranger hammering one
        # phone must not lengthen its owner's delay).
        kept = [keys[0]] if over_address else []
        kept += [keys[1]] if over_pair else []
        await to_thread.run_sync(counters.refund, [k for k in keys if k not in kept])
        raise _throttled(settings)
    delay = login_delay(settings, by_phone - settings.login_max_failures)
    if delay:
        await asyncio.sleep(delay)

    def read() -> tuple[int, str] | None:
        with db.transaction(readonly=True) as session:
            return service.password_hash_of(session, phone)

    try:
        found = await to_thread.run_sync(read)
        ok = await gate.verify(found[1] if found else None, password)
    except ServiceUnavailable:
        await to_thread.run_sync(counters.refund, keys)  # not evaluated: not an attempt
        raise
    if not ok or found is None:
        raise Unauthorized("手机号或密码错误", code="invalid_credentials")

    def forgive() -> None:
        counters.refund([keys[0], keys[2]])
        counters.clear([keys[1]])

    await to_thread.run_sync(forgive)
    return found[0]


async def sign_in(
    db: Database,
    settings: Settings,
    gate: PasswordGate,
    secret: str,
    phone: str,
    password: str,
    address: str,
    *,
    kind: str = service.API,
    ttl_seconds: int | None = None,
) -> SignedIn:
    """A new session (and its bearer token) for the right phone and password."""
    user_id = await check_password(db, settings, gate, phone, password, address)
    ttl = ttl_seconds or settings.token_ttl_seconds

    def start() -> str:
        with db.transaction() as session:
            return service.start_session(session, user_id, kind=kind, ttl_seconds=ttl)

    sid = await to_thread.run_sync(start)
    return SignedIn(user_id, sid, issue_token(secret, user_id, ttl, session_id=sid))


async def register(
    db: Database,
    gate: PasswordGate,
    *,
    phone: str,
    password: str,
    name: str,
    kind: str | None = None,
    ttl_seconds: int = 0,
) -> tuple[User, str | None]:
    """A new user (the password hashed before the transaction opens); with ``kind``, signed in
    at once: (user, session id)."""
    password_hash = await gate.hash(password)

    def create() -> tuple[User, str | None]:
        with db.transaction() as session:
            user = service.register(session, phone=phone, name=name, password_hash=password_hash)
            sid = None
            if kind is not None:
                sid = service.start_session(session, user.id, kind=kind, ttl_seconds=ttl_seconds)
            return user, sid

    return await to_thread.run_sync(create)


async def change_password(
    db: Database,
    settings: Settings,
    gate: PasswordGate,
    *,
    user_id: int,
    session_id: str,
    current_password: str,
    new_password: str,
    address: str,
) -> None:
    """A new password for a signed-in user who knows the current one (throttled like a sign-in:
    a stolen session must not become a password oracle). Every other session ends."""

    def phone_of() -> str:
        with db.transaction(readonly=True) as session:
            live = service.live_session_user(session, user_id, session_id)
        if live is None:
            raise revoked()
        if live[0].phone is None:  # a WeChat-only account has no password to change
            raise Conflict("请先绑定手机号", code="no_password")
        return live[0].phone

    phone = await to_thread.run_sync(phone_of)
    try:
        await check_password(db, settings, gate, phone, current_password, address)
    except Unauthorized as exc:
        raise ValidationFailed(
            "当前密码不正确", field="current_password", code="wrong_password"
        ) from exc
    new_hash = await gate.hash(new_password)

    def save() -> None:
        with db.transaction() as session:
            service.set_password_hash(session, user_id, new_hash, keep=session_id)

    await to_thread.run_sync(save)


def sign_out(db: Database, session_id: str) -> None:
    with db.transaction() as session:
        service.end_session(session, session_id)


def sign_out_everywhere(db: Database, user_id: int) -> int:
    with db.transaction() as session:
        return service.end_all_sessions(session, user_id)


def issue_api_token(db: Database, secret: str, user_id: int, ttl_seconds: int) -> str:
    """A bearer token with its session, without a password (the CLI, benchmarks, tests)."""
    with db.transaction() as session:
        sid = service.start_session(session, user_id, kind=service.API, ttl_seconds=ttl_seconds)
    return issue_token(secret, user_id, ttl_seconds, session_id=sid)
