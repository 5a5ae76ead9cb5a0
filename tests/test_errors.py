"""Bad input gets a clear 4xx problem+json and changes nothing (DESIGN.md law 7)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from o2o.accounts.models import User
from o2o.db import Database
from o2o.merchants.models import Merchant
from tests.support import PASSWORD, ApiClient, World, next_phone

BAD_BODIES = [
    b"{not json",
    b"",
    b"null",
    b"[]",
    b'"just a string"',
    b"\xff\xfe\x00garbage",
    '{"phone": "13800000000", "password": "密码很长很长的", "name": "\u0000"}'.encode(),
    b'{"phone": 13800000000, "password": ["x"], "name": {}}',
    b'{"phone": "13800000000", "password": "' + b"x" * 10_000 + b'", "name": "n"}',
    b'{"phone": "13800000000", "password": "long-enough", "name": ""}',
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_register_bodies_are_422_and_change_nothing(
    api: ApiClient, db: Database, body: bytes
) -> None:
    r = api.post(
        "/api/v1/auth/register", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert {"type", "title", "status", "detail", "code"} <= set(problem)
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"license_no": "短"},
        {"contact_phone": "not a phone"},
        {"category_id": -1},
        {"category_id": 2**70},
        {"category_id": 123456},
        {"description": "字" * 5001},
        {"name": None},
    ],
)
def test_bad_merchant_applications_change_nothing(
    api: ApiClient, world: World, db: Database, overrides: dict
) -> None:
    body = {
        "name": "某店",
        "contact_phone": "13712345678",
        "license_no": "91440300MA5ABCDE1",
        **overrides,
    }
    with db.transaction(readonly=True) as session:
        before = session.scalar(select(func.count()).select_from(Merchant))
    r = api.post("/api/v1/merchants", json=body, as_=world.tokens["consumer"])
    assert r.status_code == 422, r.text
    assert r.json()["errors"], r.json()
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Merchant)) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/merchants/abc",
        "/api/v1/merchants/-5",
        "/api/v1/merchants/0",
        "/api/v1/merchants/99999999999999999999999999",
        "/api/v1/merchants/1/stores/1e9",
        "/api/v1/admin/merchants?status=bogus",
        "/api/v1/admin/merchants?limit=100000",
        "/api/v1/admin/merchants?cursor=abc",
    ],
)
def test_bad_paths_and_queries_are_4xx(api: ApiClient, world: World, path: str) -> None:
    r = api.get(path, as_=world.tokens["operator"])
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_unknown_route_and_method_are_problems(api: ApiClient) -> None:
    r = api.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = api.delete("/api/v1/auth/register")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


def test_wrong_content_type_is_4xx(api: ApiClient) -> None:
    r = api.post(
        "/api/v1/auth/register",
        content=f"phone={next_phone()}&password={PASSWORD}&name=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= r.status_code < 500


def test_health_and_readiness(api: ApiClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
