from __future__ import annotations

from typing import Any

from tests.support import ApiClient, World, next_phone

STORE = {
    "name": "海岸城店",
    "address": "文心五路33号",
    "city": "深圳市",
    "district": "南山区",
    "lat": 22.517,
    "lng": 113.936,
    "phone": "0755-86000000",
    "opening_hours": "10:00-22:00",
}


def apply(api: ApiClient, token: str, **overrides: Any) -> dict:
    body = {
        "name": "新开火锅店",
        "contact_phone": "13712345678",
        "license_no": "91440300MA5ABCDE1",
        "description": "重庆火锅",
        **overrides,
    }
    r = api.post("/api/v1/merchants", json=body, as_=token)
    assert r.status_code == 201, r.text
    return r.json()


def test_onboarding_from_application_to_approved_store(api: ApiClient, world: World) -> None:
    _applicant_id, applicant = api.register()
    merchant = apply(api, applicant, category_id=world.category_id)
    assert merchant["status"] == "pending"

    me = api.get("/api/v1/me", as_=applicant).json()
    assert me["memberships"] == [
        {
            "merchant_id": merchant["id"],
            "merchant_name": "新开火锅店",
            "role": "owner",
            "store_ids": [],
        }
    ]

    # A pending merchant cannot open stores.
    r = api.post(f"/api/v1/merchants/{merchant['id']}/stores", json=STORE, as_=applicant)
    assert r.status_code == 403 and r.json()["code"] == "merchant_not_approved"

    queue = api.get("/api/v1/admin/merchants?status=pending", as_=world.tokens["operator"])
    assert [m["id"] for m in queue.json()["items"]] == [world.pending_merchant_id, merchant["id"]]

    approved = api.post(
        f"/api/v1/admin/merchants/{merchant['id']}/approve", as_=world.tokens["operator"]
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    queue = api.get("/api/v1/admin/merchants?status=pending", as_=world.tokens["operator"])
    assert [m["id"] for m in queue.json()["items"]] == [world.pending_merchant_id]

    store = api.post(f"/api/v1/merchants/{merchant['id']}/stores", json=STORE, as_=applicant)
    assert store.status_code == 201
    assert store.json()["lat"] == 22.517 and store.json()["district"] == "南山区"
    listed = api.get(f"/api/v1/merchants/{merchant['id']}/stores").json()
    assert [s["name"] for s in listed] == ["海岸城店"]

    patched = api.patch(
        f"/api/v1/merchants/{merchant['id']}/stores/{store.json()['id']}",
        json={"opening_hours": "09:00-23:00"},
        as_=applicant,
    )
    assert patched.status_code == 200 and patched.json()["opening_hours"] == "09:00-23:00"
    assert patched.json()["name"] == "海岸城店"


def test_review_moves_only_along_the_transition_table(api: ApiClient, world: World) -> None:
    _, applicant = api.register()
    merchant = apply(api, applicant)
    op = world.tokens["operator"]
    mid = merchant["id"]
    # A pending merchant cannot be suspended.
    r = api.post(f"/api/v1/admin/merchants/{mid}/suspend", json={"reason": "违规"}, as_=op)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"

    rejected = api.post(
        f"/api/v1/admin/merchants/{mid}/reject", json={"reason": "执照模糊"}, as_=op
    )
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["status_reason"] == "执照模糊"
    # Rejected cannot be approved directly …
    assert api.post(f"/api/v1/admin/merchants/{mid}/approve", as_=op).status_code == 409
    # … the owner edits the application, which sends it back for review.
    resubmitted = api.patch(
        f"/api/v1/merchants/{mid}", json={"license_no": "91440300MA5NEW001"}, as_=applicant
    )
    assert resubmitted.json()["status"] == "pending"
    assert api.post(f"/api/v1/admin/merchants/{mid}/approve", as_=op).json()["status"] == "approved"
    suspended = api.post(f"/api/v1/admin/merchants/{mid}/suspend", json={"reason": "投诉"}, as_=op)
    assert suspended.json()["status"] == "suspended"
    # A rejection needs a reason.
    r = api.post(f"/api/v1/admin/merchants/{mid}/reject", json={"reason": "  "}, as_=op)
    assert r.status_code == 422


def test_unapproved_merchant_is_invisible_to_the_public(api: ApiClient, world: World) -> None:
    _, applicant = api.register()
    merchant = apply(api, applicant)
    assert api.get(f"/api/v1/merchants/{merchant['id']}").status_code == 404
    assert (
        api.get(f"/api/v1/merchants/{merchant['id']}", as_=world.tokens["consumer"]).status_code
        == 404
    )
    own = api.get(f"/api/v1/merchants/{merchant['id']}", as_=applicant)
    assert own.status_code == 200 and own.json()["license_no"] == "91440300MA5ABCDE1"
    public = api.get(f"/api/v1/merchants/{world.a.id}").json()
    assert "license_no" not in public and public["status"] == "approved"


def test_store_coordinates_must_be_in_china(api: ApiClient, world: World) -> None:
    for lat, lng in [(91, 113.9), (22.5, 181), (48.85, 2.35), (-33.9, 151.2)]:
        r = api.post(
            f"/api/v1/merchants/{world.a.id}/stores",
            json={**STORE, "lat": lat, "lng": lng},
            as_=world.tokens["owner"],
        )
        assert r.status_code == 422, (lat, lng)


def test_staff_roles(api: ApiClient, world: World) -> None:
    clerk_phone = next_phone()
    clerk_id, clerk_token = api.register(clerk_phone)
    mid, store = world.a.id, world.a.store_ids[1]
    # A clerk needs a store, and the store must belong to the merchant.
    r = api.post(
        f"/api/v1/merchants/{mid}/invitations",
        json={"phone": clerk_phone, "role": "clerk", "store_ids": []},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 422
    r = api.post(
        f"/api/v1/merchants/{mid}/invitations",
        json={"phone": clerk_phone, "role": "clerk", "store_ids": [world.b.store_ids[0]]},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 422
    r = api.post(
        f"/api/v1/merchants/{mid}/invitations",
        json={"phone": clerk_phone, "role": "clerk", "store_ids": [store]},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 201 and r.json()["store_ids"] == [store]
    assert r.json()["status"] == "pending"
    # Not staff until the invited user says yes.
    assert api.get("/api/v1/me", as_=clerk_token).json()["memberships"] == []
    [invitation] = api.get("/api/v1/me/invitations", as_=clerk_token).json()
    assert invitation["merchant_id"] == mid and invitation["role"] == "clerk"
    r = api.post(f"/api/v1/me/invitations/{invitation['id']}/accept", as_=clerk_token)
    assert r.status_code == 200 and r.json()["role"] == "clerk"
    me = api.get("/api/v1/me", as_=clerk_token).json()
    assert me["memberships"][0]["role"] == "clerk" and me["memberships"][0]["store_ids"] == [store]

    # A manager cannot make managers; a clerk cannot add staff at all.
    other_phone = next_phone()
    api.register(other_phone)
    r = api.post(
        f"/api/v1/merchants/{mid}/invitations",
        json={"phone": other_phone, "role": "manager"},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 403
    r = api.post(
        f"/api/v1/merchants/{mid}/invitations",
        json={"phone": other_phone, "role": "clerk", "store_ids": [store]},
        as_=clerk_token,
    )
    assert r.status_code == 403
    # Adding twice, or an unknown user, is refused.
    r = api.post(
        f"/api/v1/merchants/{mid}/invitations",
        json={"phone": clerk_phone, "role": "clerk", "store_ids": [store]},
        as_=world.tokens["owner"],
    )
    assert r.status_code == 409
    r = api.post(
        f"/api/v1/merchants/{mid}/invitations",
        json={"phone": next_phone(), "role": "clerk", "store_ids": [store]},
        as_=world.tokens["owner"],
    )
    assert r.status_code == 404

    staff = api.get(f"/api/v1/merchants/{mid}/staff", as_=world.tokens["owner"]).json()
    assert {s["role"] for s in staff} == {"owner", "manager", "clerk"}
    assert (
        api.delete(
            f"/api/v1/merchants/{mid}/staff/{clerk_id}", as_=world.tokens["manager"]
        ).status_code
        == 204
    )
    assert api.get("/api/v1/me", as_=clerk_token).json()["memberships"] == []
    # The last owner stays.
    r = api.delete(f"/api/v1/merchants/{mid}/staff/{world.a.owner_id}", as_=world.tokens["owner"])
    assert r.status_code == 409 and r.json()["code"] == "last_owner"


def test_category_tree_and_commission(api: ApiClient, world: World) -> None:
    op = world.tokens["operator"]
    child = api.post(
        "/api/v1/admin/categories",
        json={"name": "火锅", "parent_id": world.category_id, "commission_bp": 550},
        as_=op,
    )
    assert child.status_code == 201
    r = api.post("/api/v1/admin/categories", json={"name": "x", "commission_bp": 10001}, as_=op)
    assert r.status_code == 422
    r = api.post("/api/v1/admin/categories", json={"name": "x", "parent_id": 999999}, as_=op)
    assert r.status_code == 422
    tree = api.get("/api/v1/categories").json()
    assert tree[0]["name"] == "美食" and tree[0]["children"][0]["name"] == "火锅"
    assert tree[0]["children"][0]["commission_bp"] == 550
    r = api.patch(
        f"/api/v1/admin/categories/{child.json()['id']}", json={"commission_bp": 480}, as_=op
    )
    assert r.json()["commission_bp"] == 480

    r = api.patch(
        f"/api/v1/admin/merchants/{world.a.id}",
        json={"commission_bp": 300, "sub_mchid": "1900000109"},
        as_=op,
    )
    assert r.status_code == 200 and r.json()["commission_bp"] == 300
