"""Authorization rules for sessions, passwords and staff invitations (loaded by
tests/test_authorization.py). An invitation of the consumer to merchant A is made for every role
(each role gets a fresh world): only the consumer may answer it, only A's managers withdraw it."""

from __future__ import annotations

from typing import Any

from o2o.merchants.models import StaffInvitation
from tests.support import PASSWORD


def _invitation_id(world: Any) -> int:
    if "_authz_invitation" not in world.__dict__:
        with world.db.transaction() as session:
            invitation = StaffInvitation(
                merchant_id=world.a.id,
                user_id=world.consumer_id,
                role="clerk",
                store_ids=[world.a.store_ids[1]],
                invited_by=world.a.owner_id,
                status="pending",
            )
            session.add(invitation)
            session.flush()
            world.__dict__["_authz_invitation"] = invitation.id
    return world.__dict__["_authz_invitation"]


def rules(Rule, EVERYONE, SIGNED_IN, A_MANAGERS, OPERATOR, a_params) -> dict:
    def inv(w: Any) -> dict[str, Any]:
        return {"merchant_id": w.a.id, "invitation_id": _invitation_id(w)}

    return {
        # A wx.login code is the credential, not a session: without WeChat configured here it is
        # 404 for everyone (the login itself: tests/test_wechat_identity.py).
        ("POST", "/api/v1/auth/wechat/miniprogram"): Rule(set(), body=lambda w: {"code": "abc"}),
        ("POST", "/api/v1/auth/logout"): Rule(SIGNED_IN),
        ("DELETE", "/api/v1/me/sessions"): Rule(SIGNED_IN),
        ("PUT", "/api/v1/me/password"): Rule(
            SIGNED_IN,
            body=lambda w: {"current_password": PASSWORD, "new_password": "a-new-password-1"},
        ),
        ("DELETE", "/api/v1/admin/users/{user_id}/sessions"): Rule(
            OPERATOR, lambda w: {"user_id": w.consumer_id}
        ),
        ("GET", "/api/v1/me/invitations"): Rule(SIGNED_IN),
        ("DELETE", "/api/v1/merchants/{merchant_id}/invitations/{invitation_id}"): Rule(
            A_MANAGERS, inv
        ),
        ("POST", "/api/v1/me/invitations/{invitation_id}/accept"): Rule({"consumer"}, inv),
        ("POST", "/api/v1/me/invitations/{invitation_id}/decline"): Rule({"consumer"}, inv),
    }
