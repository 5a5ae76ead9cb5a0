"""API shapes shared by every domain: the base model, bounded text, pagination."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")


def _reject_nul(value: Any) -> Any:
    """NUL bytes cannot be stored in PostgreSQL text and are never meaningful input."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("文本中不能包含 NUL 字符")
    elif isinstance(value, dict):
        for k, v in value.items():
            _reject_nul(k)
            _reject_nul(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _reject_nul(v)
    return value


class Schema(BaseModel):
    """Base of every request and response body."""

    model_config = ConfigDict(str_strip_whitespace=True, from_attributes=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul_bytes(cls, data: Any) -> Any:
        return _reject_nul(data)


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("不能为空")
    return value


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_not_blank)]
ShortText = Annotated[str, Field(max_length=200)]
LongText = Annotated[str, Field(max_length=5000)]
Id = Annotated[int, Field(ge=1, le=2**62)]
Quantity = Annotated[int, Field(ge=1, le=10_000)]
BasisPoints = Annotated[int, Field(ge=0, le=10_000, description="basis points (1/100 of 1%)")]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
MAINLAND_MOBILE_PATTERN = r"^1[3-9]\d{9}$"
Phone = Annotated[
    str,
    Field(pattern=MAINLAND_MOBILE_PATTERN, description="mainland China mobile number, 11 digits"),
]


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


PageLimit = Annotated[int, Field(ge=1, le=100)]
