"""登录 / 注册 / 退出 / 修改密码 / 退出所有设备: through ``o2o.accounts.flows``, so the API's
throttling, the password gate and the server-side sessions apply to pages alike."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import Response
from pydantic import Field, model_validator

from o2o.accounts import flows
from o2o.accounts.schemas import PasswordChangeIn, RegisterIn, TokenIn
from o2o.accounts.service import PAGE
from o2o.errors import AppError, ServiceUnavailable, TooManyRequests, Unauthorized
from o2o.security import client_address, password_gate
from o2o.web.context import PageDep, SignedInPageDep, page_router, safe_next
from o2o.web.forms import Form, FormDataDep
from o2o.web.session import SESSION_MAX_AGE

router = page_router()

NextParam = Annotated[str | None, Query(max_length=1000)]
PHONE_MESSAGE = "请输入 11 位中国大陆手机号"


class RegisterForm(RegisterIn):
    password_confirm: Annotated[str, Field(max_length=128)]

    @model_validator(mode="after")
    def _same_password(self) -> RegisterForm:
        if self.password != self.password_confirm:
            raise ValueError("两次输入的密码不一致")
        return self


class PasswordForm(PasswordChangeIn):
    new_password_confirm: Annotated[str, Field(max_length=128)]

    @model_validator(mode="after")
    def _same_password(self) -> PasswordForm:
        if self.new_password != self.new_password_confirm:
            raise ValueError("两次输入的新密码不一致")
        return self


REGISTER_MESSAGES = {
    "phone": PHONE_MESSAGE,
    "password": "密码至少 8 位",
    "name": "请填写 1–100 个字的昵称",
}
PASSWORD_MESSAGES = {"current_password": "请输入当前密码", "new_password": "新密码至少 8 位"}


@router.get("/login", name="login")
def login_page(page: PageDep, next: NextParam = None) -> Response:
    if page.actor is not None:
        return page.redirect(safe_next(next))
    return page.render("auth/login.html", form=Form.blank(TokenIn), next=safe_next(next, ""))


@router.post("/login")
async def login_submit(page: PageDep, data: FormDataDep) -> Response:
    raw_next = data.get("next")
    next_url = safe_next(raw_next if isinstance(raw_next, str) else None)
    form = Form.parse(TokenIn, data)
    if form.ok:
        assert form.data is not None
        request = page.request
        try:
            signed_in = await flows.sign_in(
                page.db,
                page.settings,
                password_gate(request),
                request.app.state.secret_key,
                form.data.phone,
                form.data.password,
                client_address(request),
                kind=PAGE,
                ttl_seconds=SESSION_MAX_AGE,
            )
        except (Unauthorized, TooManyRequests, ServiceUnavailable) as exc:
            form.fail(exc.detail, status=exc.status)
        else:
            page.session.login(signed_in.user_id, signed_in.session_id)
            return page.redirect(next_url, flash="登录成功")
    return page.render(
        "auth/login.html",
        form=form,
        next=next_url if next_url != "/" else "",
        status_code=form.status,
    )


@router.get("/register", name="register")
def register_page(page: PageDep, next: NextParam = None) -> Response:
    if page.actor is not None:
        return page.redirect(safe_next(next))
    return page.render(
        "auth/register.html", form=Form.blank(RegisterForm), next=safe_next(next, "")
    )


@router.post("/register")
async def register_submit(page: PageDep, data: FormDataDep) -> Response:
    raw_next = data.get("next")
    next_url = safe_next(raw_next if isinstance(raw_next, str) else None)
    form = Form.parse(RegisterForm, data, messages=REGISTER_MESSAGES, root_field="password_confirm")
    if form.ok:
        assert form.data is not None
        try:
            user, sid = await flows.register(
                page.db,
                password_gate(page.request),
                phone=form.data.phone,
                password=form.data.password,
                name=form.data.name,
                kind=PAGE,
                ttl_seconds=SESSION_MAX_AGE,
            )
        except (AppError, ServiceUnavailable) as exc:
            form.apply_error(exc, {"phone_taken": "phone"})
        else:
            assert sid is not None
            page.session.login(user.id, sid)
            return page.redirect(next_url, flash="注册成功，欢迎加入")
    return page.render(
        "auth/register.html",
        form=form,
        next=next_url if next_url != "/" else "",
        status_code=form.status,
    )


@router.post("/logout", name="logout")
def logout(page: PageDep) -> Response:
    """退出: the server-side session ends, so a copy of this cookie is worth nothing either."""
    sid = page.session.session_id
    if sid:
        flows.sign_out(page.db, sid)
    page.session.logout()
    return page.redirect("/", flash="您已退出登录", kind="info")


@router.post("/me/sessions/end-all", name="sign_out_everywhere")
def sign_out_everywhere(page: SignedInPageDep) -> Response:
    """退出所有设备: every page session and API token of this user ends, this one too."""
    assert page.actor is not None
    flows.sign_out_everywhere(page.db, page.actor.user_id)
    page.session.logout()
    return page.redirect("/login", flash="已在所有设备上退出登录", kind="info")


@router.get("/me/password", name="change_password")
def password_page(page: SignedInPageDep) -> Response:
    return page.render("auth/password.html", form=Form.blank(PasswordForm))


@router.post("/me/password")
async def password_submit(page: SignedInPageDep, data: FormDataDep) -> Response:
    assert page.actor is not None
    form = Form.parse(
        PasswordForm, data, messages=PASSWORD_MESSAGES, root_field="new_password_confirm"
    )
    if form.ok:
        assert form.data is not None and page.session.session_id is not None
        try:
            await flows.change_password(
                page.db,
                page.settings,
                password_gate(page.request),
                user_id=page.actor.user_id,
                session_id=page.session.session_id,
                current_password=form.data.current_password,
                new_password=form.data.new_password,
                address=client_address(page.request),
            )
        except (AppError, ServiceUnavailable) as exc:
            if exc.status == 401:
                raise
            form.apply_error(exc)
        else:
            return page.redirect("/me", flash="密码已修改，其他设备上的登录已失效")
    return page.render("auth/password.html", form=form, status_code=form.status)
