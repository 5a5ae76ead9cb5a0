from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from o2o.schemas import Name, Phone, Schema

Password = Annotated[str, Field(min_length=8, max_length=128)]


class RegisterIn(Schema):
    phone: Phone
    password: Password
    name: Name


class TokenIn(Schema):
    phone: Annotated[str, Field(min_length=1, max_length=20)]
    password: Annotated[str, Field(min_length=1, max_length=128)]


class PasswordChangeIn(Schema):
    current_password: Annotated[str, Field(min_length=1, max_length=128)]
    new_password: Password


class TokenOut(Schema):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserOut(Schema):
    id: int
    phone: str | None
    name: str


class MembershipOut(Schema):
    merchant_id: int
    merchant_name: str
    role: str
    store_ids: list[int]


class MeOut(UserOut):
    is_admin: bool
    memberships: list[MembershipOut]
