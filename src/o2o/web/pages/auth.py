"""登录 / 注册 / 退出: phone + password through accounts.service (the API's throttling applies)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import Response
from pydantic import Field, model_validator

from o2o.accounts import service as accounts
from o2o.accounts.schemas import RegisterIn, TokenIn
from o2o.errors import TooManyRequests, Unauthorized
from o2o.security import read_token
from o2o.web.context import PageDep, page_router, safe_next
from o2o.web.forms import Form, FormDataDep

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


REGISTER_MESSAGES = {
    "phone": PHONE_MESSAGE,
    "password": "密码至少 8 位",
    "name": "请填写 1–100 个字的昵称",
}


@router.get("/login", name="login")
def login_page(page: PageDep, next: NextParam = None) -> Response:
    if page.actor is not None:
        return page.redirect(safe_next(next))
    return page.render("auth/login.html", form=Form.blank(TokenIn), next=safe_next(next, ""))


@router.post("/login")
def login_submit(page: PageDep, data: FormDataDep) -> Response:
    raw_next = data.get("next")
    next_url = safe_next(raw_next if isinstance(raw_next, str) else None)
    form = Form.parse(TokenIn, data)
    if form.ok:
        assert form.data is not None
        secret = page.request.app.state.secret_key
        try:
            token = accounts.authenticate(
                page.db, page.settings, secret, form.data.phone, form.data.password
            )
        except (Unauthorized, TooManyRequests) as exc:
            form.fail(exc.detail, status=exc.status)
        else:
            page.session.login(read_token(secret, token))
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
def register_submit(page: PageDep, data: FormDataDep) -> Response:
    raw_next = data.get("next")
    next_url = safe_next(raw_next if isinstance(raw_next, str) else None)
    form = Form.parse(RegisterForm, data, messages=REGISTER_MESSAGES, root_field="password_confirm")
    user_id = form.submit(
        page.db,
        lambda session, d: (
            accounts.register(session, phone=d.phone, password=d.password, name=d.name).id
        ),
        field_by_code={"phone_taken": "phone"},
    )
    if user_id is None:
        return page.render(
            "auth/register.html",
            form=form,
            next=next_url if next_url != "/" else "",
            status_code=form.status,
        )
    page.session.login(user_id)
    return page.redirect(next_url, flash="注册成功，欢迎加入")


@router.post("/logout", name="logout")
def logout(page: PageDep) -> Response:
    page.session.logout()
    return page.redirect("/", flash="您已退出登录", kind="info")
