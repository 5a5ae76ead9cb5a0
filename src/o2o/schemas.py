"""API shapes shared by every domain: the base model, bounded text, strict numbers, pagination.

The one home of input rules every domain shares:

* text: ``Name`` / ``ShortText`` / :func:`line` (one line) and ``LongText`` refuse control
  characters and the bidirectional overrides that make "abc\u202egpj.exe" read differently from
  what it is; one-line text also refuses line breaks and invisible characters (zero-width
  spaces and joiners, soft hyphens, byte-order marks), so two names that look the same are the same;
* digits: ``[0-9]`` only, never ``\\d`` (which lets ``१`` and full-width ``１`` through and makes
  look-alike phone numbers);
* numbers in bodies: quantities, amounts and rates are strict integers (``"1"`` and ``true`` are
  refused; page forms convert their strings first, see ``o2o.web.forms``);
* PATCH bodies: a field whose column cannot be empty is declared ``name: Name = None`` (not
  ``Name | None``): left out it is skipped (``model_dump(exclude_unset=True)``), an explicit
  ``null`` is a 422 instead of reaching the database.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator

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


# C0 and C1 controls (but tab, line feed, carriage return), DEL, and the bidirectional
# embeddings, overrides and isolates: never meaningful in anything a person types.
_CONTROL_OR_BIDI = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Also refused in one line of text: line breaks, tabs and characters that show nothing
# (soft hyphen, Mongolian vowel separator, zero-width space/non-joiner/joiner, LRM/RLM, line
# and paragraph separators, word joiner and invisible operators, byte-order mark).
_BREAK_OR_INVISIBLE = re.compile("[\t\n\r\u00ad\u180e\u200b-\u200f\u2028\u2029\u2060-\u2064\ufeff]")


def clean_text(value: str) -> str:
    """Free text (several lines allowed): no control or bidi-override characters."""
    if _CONTROL_OR_BIDI.search(value):
        raise ValueError("不能包含控制字符或文字方向控制符")
    return value


def clean_line(value: str) -> str:
    """One line (names, addresses, codes): no control, bidi, line-break or invisible characters."""
    clean_text(value)
    if _BREAK_OR_INVISIBLE.search(value):
        raise ValueError("不能包含换行或不可见字符")
    return value


Line = AfterValidator(clean_line)
Text = AfterValidator(clean_text)


def line(*, min_length: int = 0, max_length: int) -> Any:
    """One line of text of bounded length: ``address: line(min_length=1, max_length=300)``."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length), Line]


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_not_blank), Line]
ShortText = Annotated[str, Field(max_length=200), Line]
LongText = Annotated[str, Field(max_length=5000), Text]
# Ids stay lax (path parameters arrive as text).
Id = Annotated[int, Field(ge=1, le=2**62)]
# Strict integers: a JSON number, never "1" or true (page forms convert their text first).
StrictInt = Annotated[int, Strict()]
Quantity = Annotated[int, Strict(), Field(ge=1, le=10_000)]
BasisPoints = Annotated[
    int, Strict(), Field(ge=0, le=10_000, description="basis points (1/100 of 1%)")
]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
MAINLAND_MOBILE_PATTERN = r"^1[3-9][0-9]{9}$"
Phone = Annotated[
    str,
    Field(pattern=MAINLAND_MOBILE_PATTERN, description="mainland China mobile number, 11 digits"),
]


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


PageLimit = Annotated[int, Field(ge=1, le=100)]
