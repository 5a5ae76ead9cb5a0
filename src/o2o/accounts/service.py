"""Accounts: users, their signed-in sessions, passwords, operators.

Rules that take a ``session`` and never open or end a transaction. Hashing a password is the
caller's business *before* it opens its transaction (``o2o.accounts.flows`` does it through the
password gate); ``password_hash=`` takes the result.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from o2o.accounts.models import User, UserSession
from o2o.errors import Conflict, NotFound
from o2o.security import hash_password
from o2o.timeutil import utcnow

PAGE, API = "page", "api"


def find_by_phone(session: Session, phone: str) -> User | None:
    return session.scalar(select(User).where(User.phone == phone))


def password_hash_of(session: Session, phone: str) -> tuple[int, str] | None:
    row = session.execute(select(User.id, User.password_hash).where(User.phone == phone)).first()
    return None if row is None else (row.id, row.password_hash)


def register(
    session: Session,
    *,
    phone: str,
    name: str,
    password: str | None = None,
    password_hash: str | None = None,
) -> User:
    """A new user. Request paths pass ``password_hash`` (hashed before the transaction);
    the CLI and demo data may pass ``password``."""
    if find_by_phone(session, phone) is not None:
        raise Conflict("该手机号已注册", code="phone_taken")
    if password_hash is None:
        assert password is not None
        password_hash = hash_password(password)
    user = User(phone=phone, name=name, password_hash=password_hash)
    session.add(user)
    session.flush()
    return user


# --- sessions --------------------------------------------------------------------------------


def start_session(session: Session, user_id: int, *, kind: str, ttl_seconds: int) -> str:
    """A new signed-in session; its id goes into the page cookie or the bearer token."""
    sid = secrets.token_urlsafe(24)
    now = utcnow()
    session.add(
        UserSession(
            id=sid,
            user_id=user_id,
            kind=kind,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    session.flush()
    return sid


def live_session_user(session: Session, user_id: int, sid: str) -> tuple[User, datetime] | None:
    """The user of a live session, and when the session expires; None if it was revoked,
    expired, or belongs to someone else."""
    row = session.execute(
        select(User, UserSession.expires_at)
        .join(UserSession, UserSession.user_id == User.id)
        .where(User.id == user_id, UserSession.id == sid, UserSession.expires_at > utcnow())
    ).first()
    return None if row is None else (row[0], row[1])


def extend_session(session: Session, sid: str, ttl_seconds: int) -> None:
    session.execute(
        update(UserSession)
        .where(UserSession.id == sid)
        .values(expires_at=utcnow() + timedelta(seconds=ttl_seconds))
    )


def end_session(session: Session, sid: str) -> None:
    session.execute(delete(UserSession).where(UserSession.id == sid))


def end_all_sessions(session: Session, user_id: int, *, keep: str | None = None) -> int:
    """Sign the user out everywhere (but ``keep``, the session doing it, if given)."""
    stmt = delete(UserSession).where(UserSession.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(UserSession.id != keep)
    return session.execute(stmt).rowcount


def set_password_hash(
    session: Session, user_id: int, password_hash: str, *, keep: str | None = None
) -> None:
    """A new password: every other session of the user ends at once."""
    session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
    end_all_sessions(session, user_id, keep=keep)


def purge_expired_sessions(session: Session) -> int:
    return session.execute(delete(UserSession).where(UserSession.expires_at < utcnow())).rowcount


# --- operators -------------------------------------------------------------------------------


def create_admin(session: Session, *, phone: str, password: str, name: str = "平台运营") -> User:
    """Create a platform operator, or promote (and reset the password of) an existing user:
    a reset ends every session of that user."""
    user = find_by_phone(session, phone)
    if user is None:
        user = register(session, phone=phone, password=password, name=name)
    else:
        set_password_hash(session, user.id, hash_password(password))
        session.refresh(user)
    user.is_admin = True
    session.flush()
    return user


def require_user(session: Session, phone: str) -> User:
    user = find_by_phone(session, phone)
    if user is None:
        raise NotFound("该手机号尚未注册", code="user_not_found")
    return user
