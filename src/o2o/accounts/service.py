"""Accounts: registration, sign-in with throttling, operators."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o import ratelimit
from o2o.accounts.models import User
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import Conflict, NotFound, Unauthorized
from o2o.security import hash_password, issue_token, verify_password


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        # A token for a user that no longer exists is as good as no token.
        raise Unauthorized("登录凭证无效", code="invalid_token")
    return user


def find_by_phone(session: Session, phone: str) -> User | None:
    return session.scalar(select(User).where(User.phone == phone))


def register(session: Session, *, phone: str, password: str, name: str) -> User:
    if find_by_phone(session, phone) is not None:
        raise Conflict("该手机号已注册", code="phone_taken")
    user = User(phone=phone, name=name, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def login_throttle_key(phone: str) -> str:
    return f"login:{phone}"


def authenticate(db: Database, settings: Settings, secret: str, phone: str, password: str) -> str:
    """A bearer token for the right phone and password.

    The 401 never says which part was wrong; failures per phone are counted and, past the limit,
    refused with 429 until the window has passed.
    """
    key = login_throttle_key(phone)
    ratelimit.ensure_not_throttled(
        db,
        key,
        limit=settings.login_max_failures,
        window_seconds=settings.login_failure_window_seconds,
        detail="登录失败次数过多，请稍后再试",
    )
    with db.transaction(readonly=True) as session:
        user = find_by_phone(session, phone)
        ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None:
        ratelimit.record_failure(db, key)
        raise Unauthorized("手机号或密码错误", code="invalid_credentials")
    ratelimit.clear(db, key)
    return issue_token(secret, user.id, settings.token_ttl_seconds)


def create_admin(session: Session, *, phone: str, password: str, name: str = "平台运营") -> User:
    """Create a platform operator, or promote (and reset the password of) an existing user."""
    user = find_by_phone(session, phone)
    if user is None:
        user = register(session, phone=phone, password=password, name=name)
    else:
        user.password_hash = hash_password(password)
    user.is_admin = True
    session.flush()
    return user


def require_user(session: Session, phone: str) -> User:
    user = find_by_phone(session, phone)
    if user is None:
        raise NotFound("该手机号尚未注册", code="user_not_found")
    return user
