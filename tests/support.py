"""Helpers for API tests: a test client that knows how to sign in, and a ready-made world."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.accounts.service import start_session
from o2o.db import Database
from o2o.merchants.models import Category, Membership, MembershipStore, Merchant, Store
from o2o.security import hash_password, issue_token

PASSWORD = "correct-horse-9"
_PASSWORD_HASH = hash_password(PASSWORD)  # hashed once: argon2 is slow on purpose
_phones = itertools.count(13000000000)


def next_phone() -> str:
    return str(next(_phones))


class ApiClient(TestClient):
    """``TestClient`` plus token handling: ``api.get(url, as_=token)``."""

    def __init__(self, app: Any) -> None:
        super().__init__(app, raise_server_exceptions=False)

    def _with_token(self, kw: dict[str, Any], as_: str | None) -> dict[str, Any]:
        if as_ is not None:
            kw["headers"] = {**(kw.get("headers") or {}), "Authorization": f"Bearer {as_}"}
        return kw

    def get(self, url: Any, *, as_: str | None = None, **kw: Any) -> Any:  # type: ignore[override]
        return super().request("GET", url, **self._with_token(kw, as_))

    def post(self, url: Any, *, as_: str | None = None, **kw: Any) -> Any:  # type: ignore[override]
        return super().request("POST", url, **self._with_token(kw, as_))

    def patch(self, url: Any, *, as_: str | None = None, **kw: Any) -> Any:  # type: ignore[override]
        return super().request("PATCH", url, **self._with_token(kw, as_))

    def put(self, url: Any, *, as_: str | None = None, **kw: Any) -> Any:  # type: ignore[override]
        return super().request("PUT", url, **self._with_token(kw, as_))

    def delete(self, url: Any, *, as_: str | None = None, **kw: Any) -> Any:  # type: ignore[override]
        return super().request("DELETE", url, **self._with_token(kw, as_))

    def register(self, phone: str | None = None, name: str = "测试用户") -> tuple[int, str]:
        phone = phone or next_phone()
        r = self.post(
            "/api/v1/auth/register", json={"phone": phone, "password": PASSWORD, "name": name}
        )
        assert r.status_code == 201, r.text
        token = self.post("/api/v1/auth/token", json={"phone": phone, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return r.json()["id"], token.json()["access_token"]


def token_for(app: Any, user_id: int, db: Database | None = None, ttl: int = 3600) -> str:
    """A bearer token with its server-side session (as a sign-in would make)."""
    database = db or app.state.db
    with database.transaction() as session:
        sid = start_session(session, user_id, kind="api", ttl_seconds=ttl)
    return issue_token(app.state.secret_key, user_id, ttl, session_id=sid)


def make_user(session: Session, *, name: str = "用户", is_admin: bool = False) -> User:
    user = User(phone=next_phone(), name=name, password_hash=_PASSWORD_HASH, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


@dataclass
class MerchantFixture:
    id: int
    store_ids: list[int]
    owner_id: int
    manager_id: int
    clerk_id: int  # clerk of store_ids[0] only
    tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """Two approved merchants with staff, a category, an operator and two consumers."""

    category_id: int
    a: MerchantFixture
    b: MerchantFixture
    operator_id: int
    consumer_id: int
    other_consumer_id: int
    pending_merchant_id: int
    tokens: dict[str, str]
    phones: dict[str, str]
    db: Database

    def token(self, role: str) -> str | None:
        return self.tokens.get(role)


def make_merchant(session: Session, category_id: int, name: str) -> MerchantFixture:
    owner = make_user(session, name=f"{name}店主")
    manager = make_user(session, name=f"{name}店长")
    clerk = make_user(session, name=f"{name}店员")
    merchant = Merchant(
        name=name,
        contact_phone=owner.phone,
        license_no="91440300MA5TEST01",
        category_id=category_id,
        status="approved",
    )
    session.add(merchant)
    session.flush()
    stores = [
        Store(
            merchant_id=merchant.id,
            name=f"{name}{i}号店",
            address="深南大道1号",
            city="深圳市",
            district="南山区",
            lat=22.53 + i / 100,
            lng=113.93 + i / 100,
        )
        for i in range(2)
    ]
    session.add_all(stores)
    session.flush()
    session.add(Membership(user_id=owner.id, merchant_id=merchant.id, role="owner"))
    session.add(Membership(user_id=manager.id, merchant_id=merchant.id, role="manager"))
    clerk_membership = Membership(user_id=clerk.id, merchant_id=merchant.id, role="clerk")
    clerk_membership.stores = [MembershipStore(store_id=stores[0].id)]
    session.add(clerk_membership)
    session.flush()
    return MerchantFixture(merchant.id, [s.id for s in stores], owner.id, manager.id, clerk.id)


def build_world(db: Database, app: Any) -> World:
    with db.transaction() as session:
        category = Category(name="美食", commission_bp=600)
        session.add(category)
        session.flush()
        a = make_merchant(session, category.id, "甲火锅")
        b = make_merchant(session, category.id, "乙书店")
        operator = make_user(session, name="运营", is_admin=True)
        consumer = make_user(session, name="顾客")
        other = make_user(session, name="另一位顾客")
        applicant = make_user(session, name="申请人")
        pending = Merchant(
            name="待审核商户",
            contact_phone=applicant.phone,
            license_no="91440300MA5PENDING",
            category_id=category.id,
            status="pending",
        )
        session.add(pending)
        session.flush()
        session.add(Membership(user_id=applicant.id, merchant_id=pending.id, role="owner"))
        category_id = category.id
        phones = {"consumer": consumer.phone, "other_consumer": other.phone}
    tokens = {
        "operator": token_for(app, operator.id, db),
        "consumer": token_for(app, consumer.id, db),
        "other_consumer": token_for(app, other.id, db),
        "owner": token_for(app, a.owner_id, db),
        "manager": token_for(app, a.manager_id, db),
        "clerk": token_for(app, a.clerk_id, db),
        "other_owner": token_for(app, b.owner_id, db),
        "other_manager": token_for(app, b.manager_id, db),
        "other_clerk": token_for(app, b.clerk_id, db),
    }
    return World(
        category_id, a, b, operator.id, consumer.id, other.id, pending.id, tokens, phones, db
    )


def bind_wechat(db: Any, user_id: int, appid: str, openid: str) -> None:
    """Give a user the WeChat identity a JSAPI payment takes its openid from (what the silent
    authorization or the mini-program login would have made). Idempotent."""
    from sqlalchemy import select

    from o2o.wechat.models import WeChatIdentity

    with db.transaction() as session:
        found = session.scalar(
            select(WeChatIdentity).where(
                WeChatIdentity.appid == appid, WeChatIdentity.openid == openid
            )
        )
        if found is None:
            session.add(WeChatIdentity(user_id=user_id, appid=appid, openid=openid))
