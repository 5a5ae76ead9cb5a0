from __future__ import annotations

from fastapi import APIRouter, Request, Response

from o2o.accounts import flows
from o2o.accounts.schemas import MeOut, PasswordChangeIn, RegisterIn, TokenIn, TokenOut, UserOut
from o2o.deps import ActorDep, AdminDep, ClaimsDep, DbDep, ReadSessionDep, SettingsDep
from o2o.errors import Unauthorized
from o2o.merchants.models import Merchant
from o2o.schemas import Id
from o2o.security import client_address, password_gate

router = APIRouter(prefix="/api/v1", tags=["accounts"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.post("/auth/register", status_code=201, response_model=UserOut)
async def register(body: RegisterIn, request: Request, db: DbDep) -> UserOut:
    user, _ = await flows.register(
        db, password_gate(request), phone=body.phone, password=body.password, name=body.name
    )
    return UserOut.model_validate(user)


@router.post(
    "/auth/token",
    response_model=TokenOut,
    responses={
        401: {"description": "invalid_credentials"},
        429: {"description": "login_throttled (this phone from this address, or this address)"},
        503: {"description": "sign_in_busy: too many sign-ins at once; see Retry-After"},
    },
)
async def token(body: TokenIn, request: Request, db: DbDep, settings: SettingsDep) -> TokenOut:
    """A bearer token (and a server-side session that 退出 / a password change ends)."""
    signed_in = await flows.sign_in(
        db,
        settings,
        password_gate(request),
        request.app.state.secret_key,
        body.phone,
        body.password,
        client_address(request),
    )
    return TokenOut(access_token=signed_in.token, expires_in=settings.token_ttl_seconds)


@router.post("/auth/logout", status_code=204, response_class=Response)
def logout(claims: ClaimsDep, db: DbDep) -> Response:
    """退出: this token stops working at once."""
    if claims is None:
        raise Unauthorized("请先登录", headers={"WWW-Authenticate": "Bearer"})
    flows.sign_out(db, claims.session_id)
    return Response(status_code=204)


@router.delete("/me/sessions", status_code=204, response_class=Response)
def sign_out_everywhere(actor: ActorDep, db: DbDep) -> Response:
    """退出所有设备: every token and page session of the caller stops working at once."""
    flows.sign_out_everywhere(db, actor.user_id)
    return Response(status_code=204)


@router.put(
    "/me/password",
    status_code=204,
    response_class=Response,
    responses={422: {"description": "wrong_password / validation_error"}},
)
async def change_password(
    body: PasswordChangeIn, request: Request, claims: ClaimsDep, db: DbDep, settings: SettingsDep
) -> Response:
    """修改密码: needs the current one; every other session (tokens and pages) ends at once."""
    if claims is None:
        raise Unauthorized("请先登录", headers={"WWW-Authenticate": "Bearer"})
    await flows.change_password(
        db,
        settings,
        password_gate(request),
        user_id=claims.user_id,
        session_id=claims.session_id,
        current_password=body.current_password,
        new_password=body.new_password,
        address=client_address(request),
    )
    return Response(status_code=204)


@router.get("/me", response_model=MeOut)
def me(actor: ActorDep, session: ReadSessionDep) -> MeOut:
    names = {
        m.id: m.name for m in session.query(Merchant).filter(Merchant.id.in_(list(actor.roles)))
    }
    return MeOut(
        id=actor.user_id,
        phone=actor.phone,
        name=actor.name,
        is_admin=actor.is_admin,
        memberships=[
            {
                "merchant_id": r.merchant_id,
                "merchant_name": names.get(r.merchant_id, ""),
                "role": r.role,
                "store_ids": sorted(r.store_ids),
            }
            for r in actor.roles.values()
        ],
    )


@admin_router.delete("/users/{user_id}/sessions", status_code=204, response_class=Response)
def admin_sign_out_everywhere(user_id: Id, _admin: AdminDep, db: DbDep) -> Response:
    """Operator: sign a user out everywhere (a stolen phone, a leaked token)."""
    flows.sign_out_everywhere(db, user_id)
    return Response(status_code=204)


routers = [router, admin_router]
