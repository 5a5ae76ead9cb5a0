"""Every route, every role: who may and who may not (DESIGN.md law 5).

Add a rule for each new route: ``test_every_route_has_a_rule`` fails when one is missing.
A role in ``allowed`` must get a 2xx; every other role must get 401, 403 or 404.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from o2o.app import create_app
from o2o.config import Settings
from tests.conftest import empty_all_tables
from tests.support import ApiClient, World, build_world, next_phone

# anonymous; a consumer; a clerk of merchant A's *other* store; A's manager and owner;
# the manager of another merchant (B); the platform operator.
ROLES = ["anonymous", "consumer", "clerk", "manager", "owner", "other_manager", "operator"]
EVERYONE = set(ROLES)
SIGNED_IN = EVERYONE - {"anonymous"}
A_MANAGERS = {"owner", "manager"}
OPERATOR = {"operator"}


@dataclass
class Rule:
    allowed: set[str]
    params: Callable[[World], dict[str, Any]] = field(default=lambda w: {})
    body: Callable[[World], Any] | None = None
    query: str = ""
    files: Callable[[World], Any] | None = None  # a multipart upload instead of a JSON body


def a_params(w: World) -> dict[str, Any]:
    # store_ids[1] is the store the clerk does NOT work at.
    return {"merchant_id": w.a.id, "store_id": w.a.store_ids[1], "user_id": w.a.clerk_id}


STORE_BODY = {
    "name": "新店",
    "address": "科苑路1号",
    "city": "深圳市",
    "district": "南山区",
    "lat": 22.54,
    "lng": 113.95,
}

RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): Rule(EVERYONE),
    ("GET", "/readyz"): Rule(EVERYONE),
    ("POST", "/api/v1/auth/register"): Rule(
        EVERYONE, body=lambda w: {"phone": next_phone(), "password": "long-enough-1", "name": "新"}
    ),
    ("POST", "/api/v1/auth/token"): Rule(
        EVERYONE, body=lambda w: {"phone": w.phones["consumer"], "password": "correct-horse-9"}
    ),
    ("GET", "/api/v1/me"): Rule(SIGNED_IN),
    ("POST", "/api/v1/merchants"): Rule(
        SIGNED_IN,
        body=lambda w: {"name": "新店", "contact_phone": "13712345678", "license_no": "91440300X1"},
    ),
    ("GET", "/api/v1/merchants/{merchant_id}"): Rule(EVERYONE, a_params),
    ("PATCH", "/api/v1/merchants/{merchant_id}"): Rule(
        {"owner"}, a_params, body=lambda w: {"description": "更新"}
    ),
    ("POST", "/api/v1/merchants/{merchant_id}/stores"): Rule(
        A_MANAGERS, a_params, body=lambda w: STORE_BODY
    ),
    ("GET", "/api/v1/merchants/{merchant_id}/stores"): Rule(EVERYONE, a_params),
    ("GET", "/api/v1/merchants/{merchant_id}/stores/{store_id}"): Rule(EVERYONE, a_params),
    ("PATCH", "/api/v1/merchants/{merchant_id}/stores/{store_id}"): Rule(
        A_MANAGERS, a_params, body=lambda w: {"opening_hours": "全天"}
    ),
    ("GET", "/api/v1/merchants/{merchant_id}/staff"): Rule(A_MANAGERS, a_params),
    ("POST", "/api/v1/merchants/{merchant_id}/invitations"): Rule(
        A_MANAGERS,
        a_params,
        body=lambda w: {
            "phone": w.phones["other_consumer"],
            "role": "clerk",
            "store_ids": [w.a.store_ids[1]],
        },
    ),
    ("GET", "/api/v1/merchants/{merchant_id}/invitations"): Rule(A_MANAGERS, a_params),
    ("DELETE", "/api/v1/merchants/{merchant_id}/staff/{user_id}"): Rule(A_MANAGERS, a_params),
    ("GET", "/api/v1/categories"): Rule(EVERYONE),
    ("GET", "/api/v1/admin/merchants"): Rule(OPERATOR, query="?status=pending"),
    ("POST", "/api/v1/admin/merchants/{merchant_id}/approve"): Rule(
        OPERATOR, lambda w: {"merchant_id": w.pending_merchant_id}
    ),
    ("POST", "/api/v1/admin/merchants/{merchant_id}/reject"): Rule(
        OPERATOR,
        lambda w: {"merchant_id": w.pending_merchant_id},
        body=lambda w: {"reason": "资料不全"},
    ),
    ("POST", "/api/v1/admin/merchants/{merchant_id}/suspend"): Rule(
        OPERATOR, a_params, body=lambda w: {"reason": "投诉较多"}
    ),
    ("PATCH", "/api/v1/admin/merchants/{merchant_id}"): Rule(
        OPERATOR, a_params, body=lambda w: {"commission_bp": 300}
    ),
    ("GET", "/api/v1/admin/categories"): Rule(OPERATOR),
    ("POST", "/api/v1/admin/categories"): Rule(
        OPERATOR, body=lambda w: {"name": "烧烤", "commission_bp": 500}
    ),
    ("PATCH", "/api/v1/admin/categories/{category_id}"): Rule(
        OPERATOR, lambda w: {"category_id": w.category_id}, body=lambda w: {"commission_bp": 450}
    ),
}


def api_routes() -> list[tuple[str, str]]:
    app = create_app(
        Settings(database_url="sqlite://", secret_key="k" * 40, demo=False, sandbox_payments=True)
    )
    # The OpenAPI document is the public list of API routes (every router, however included).
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]


# Domains register extra rules here as they add routes (see tests/authz_rules_*.py).
def _load_extra_rules() -> None:
    import importlib
    import pkgutil

    import tests

    for module in pkgutil.iter_modules(tests.__path__):
        if module.name.startswith("authz_rules_"):
            extra = importlib.import_module(f"tests.{module.name}")
            RULES.update(extra.rules(Rule, EVERYONE, SIGNED_IN, A_MANAGERS, OPERATOR, a_params))


_load_extra_rules()


def test_every_route_has_a_rule() -> None:
    missing = [r for r in api_routes() if r not in RULES]
    assert not missing, f"routes without an authorization rule: {missing}"
    stale = [r for r in RULES if r not in set(api_routes())]
    assert not stale, f"rules for routes that no longer exist: {stale}"


def _call(api: ApiClient, world: World, key: tuple[str, str], role: str) -> Any:
    method, path = key
    rule = RULES[key]
    url = path.format(**rule.params(world)) + rule.query
    kwargs: dict[str, Any] = {}
    if rule.body is not None:
        kwargs["json"] = rule.body(world)
    if rule.files is not None:
        kwargs["files"] = rule.files(world)
    token = None if role == "anonymous" else world.tokens[role]
    return api.request(
        method, url, headers={"Authorization": f"Bearer {token}"} if token else {}, **kwargs
    )


@pytest.mark.parametrize("key", sorted(RULES), ids=lambda k: f"{k[0]} {k[1]}")
def test_route_authorization(key: tuple[str, str], db_url: str, app: Any, db: Any) -> None:
    with ApiClient(app) as api:
        for role in ROLES:
            empty_all_tables(db_url)
            world = build_world(db, app)
            r = _call(api, world, key, role)
            if role in RULES[key].allowed:
                assert 200 <= r.status_code < 300, (
                    f"{role} should be allowed: {r.status_code} {r.text}"
                )
            else:
                assert r.status_code in (401, 403, 404), (
                    f"{role} should be refused: {r.status_code} {r.text}"
                )
