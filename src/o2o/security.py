"""Passwords (argon2), bearer tokens (signed JWT tied to a server-side session), the caller's
address, and the "who is calling" dependencies.

Hashing a password costs ~64 MiB and a core for a tenth of a second or more, on purpose. It never
runs inside a database transaction (a flood of sign-ins would hold every pooled connection), and
:class:`PasswordGate` lets only a few run at once per process: the rest wait on the event loop
(no thread, no connection held) and past a short wait get 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, TypeVar

import jwt
from anyio import to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import exists, select

from o2o.accounts.models import UserSession
from o2o.db import Database
from o2o.errors import Forbidden, ServiceUnavailable, Unauthorized
from o2o.timeutil import utcnow

_hasher = PasswordHasher()
# A hash to verify against when the phone is unknown, so timing does not reveal which part failed.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

TOKEN_ALGORITHM = "HS256"
TOKEN_AUDIENCE = "o2o-api"
_USER_ID = re.compile(r"[1-9][0-9]{0,17}")
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")

R = TypeVar("R")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class PasswordGate:
    """At most ``concurrency`` argon2 computations at once in this process; callers past that
    wait up to ``wait_seconds`` (at most ``max_waiting`` of them), then get 503."""

    def __init__(self, concurrency: int, wait_seconds: float, max_waiting: int) -> None:
        self.concurrency = concurrency
        self.wait_seconds = wait_seconds
        self.max_waiting = max_waiting
        self.waiting = 0
        # One semaphore per event loop (a test suite runs several loops in one process).
        self._semaphores: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return semaphore

    def _busy(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            "登录人数过多，请稍后重试",
            code="sign_in_busy",
            retry_after=max(1, round(self.wait_seconds)),
        )

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        semaphore = self._semaphore()
        if semaphore.locked() and self.waiting >= self.max_waiting:
            raise self._busy()
        self.waiting += 1
        try:
            await asyncio.wait_for(semaphore.acquire(), timeout=self.wait_seconds)
        except TimeoutError as exc:
            raise self._busy() from exc
        finally:
            self.waiting -= 1
        try:
            return await to_thread.run_sync(fn, *args)
        finally:
            semaphore.release()

    async def hash(self, password: str) -> str:
        return await self.run(hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await self.run(verify_password, password_hash, password)


def password_gate(request: Request) -> PasswordGate:
    """The app's gate (made once per app from its settings)."""
    gate = getattr(request.app.state, "password_gate", None)
    if gate is None:
        settings = request.app.state.settings
        gate = request.app.state.password_gate = PasswordGate(
            settings.password_hash_concurrency,
            settings.password_hash_wait_seconds,
            settings.password_hash_max_waiting,
        )
    return gate


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    session_id: str


def issue_token(
    secret: str, user_id: int, ttl_seconds: int, *, session_id: str, **claims: Any
) -> str:
    now = utcnow()
    payload = {
        "sub": str(user_id),
        "sid": session_id,
        "aud": TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
        **claims,
    }
    return jwt.encode(payload, secret, algorithm=TOKEN_ALGORITHM)


def read_token_claims(secret: str, token: str) -> TokenClaims:
    """The claims of a well-formed, signed, unexpired token (``exp``, ``iat``, ``aud``, ``sub``
    and ``sid`` required; ``sub`` ASCII digits only). Whether its session still exists is
    checked by the dependencies below."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],
            audience=TOKEN_AUDIENCE,
            options={"require": ["exp", "iat", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("登录已过期，请重新登录", code="token_expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("登录凭证无效", code="invalid_token") from exc
    sub, sid = payload.get("sub"), payload.get("sid")
    if (
        not isinstance(sub, str)
        or not _USER_ID.fullmatch(sub)
        or not isinstance(sid, str)
        or not _SESSION_ID.fullmatch(sid)
    ):
        raise Unauthorized("登录凭证无效", code="invalid_token")
    return TokenClaims(int(sub), sid)


def read_token(secret: str, token: str) -> int:
    """The user id in a valid token (signature and expiry only; see :func:`read_token_claims`)."""
    return read_token_claims(secret, token).user_id


def session_is_live(user_id: int, session_id: str) -> Any:
    """SQL condition: the session exists, belongs to the user and has not expired."""
    return exists().where(
        UserSession.id == session_id,
        UserSession.user_id == user_id,
        UserSession.expires_at > utcnow(),
    )


def revoked() -> Unauthorized:
    return Unauthorized("登录已失效，请重新登录", code="session_revoked")


_bearer = HTTPBearer(auto_error=False)


async def bearer_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenClaims | None:
    """The claims of ``Authorization: Bearer`` (signature checked; the session is not yet).

    ``async def``: a few microseconds of HMAC on the event loop are cheaper than the
    worker-thread round trip FastAPI gives a plain ``def`` dependency."""
    if credentials is None:
        return None
    return read_token_claims(request.app.state.secret_key, credentials.credentials)


def bearer_user_id(
    request: Request, claims: Annotated[TokenClaims | None, Depends(bearer_claims)]
) -> int | None:
    """The caller's user id, if a token is given and its session is live (401 otherwise)."""
    if claims is None:
        return None
    db: Database = request.app.state.db
    with db.transaction(readonly=True) as session:
        if not session.scalar(select(session_is_live(claims.user_id, claims.session_id))):
            raise revoked()
    return claims.user_id


def require_user_id(user_id: Annotated[int | None, Depends(bearer_user_id)]) -> int:
    if user_id is None:
        raise Unauthorized("请先登录", headers={"WWW-Authenticate": "Bearer"})
    return user_id


def forbid(detail: str = "无权操作") -> Forbidden:
    return Forbidden(detail)


# --- the client's address --------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """``O2O_TRUSTED_PROXIES``: comma-separated addresses or networks."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: Request) -> str:
    """The real client's address: the peer, unless the peer is a trusted proxy; then the last
    address in ``X-Forwarded-For`` that is not itself a trusted proxy (the ones before it
    are whatever the client chose to send)."""
    peer = request.client.host if request.client else ""
    networks = trusted_networks(request.app.state.settings.trusted_proxies)
    if not networks or not _is_trusted(peer, networks):
        return peer or "unknown"
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in hops if h]):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return peer  # garbage in the header: do not let it pick a key
        if not _is_trusted(address, networks):
            return address
    return peer
