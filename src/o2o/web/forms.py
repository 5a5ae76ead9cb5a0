"""Server-side form handling: parse a posted form into a pydantic model (usually the API's own
schema, so pages and API validate alike), keep what the user typed, and put every error in
Chinese next to its field.

    @router.post("/console/m/{merchant_id}/stores/new")
    def create(page: ConsolePageDep, data: FormDataDep) -> Response:
        form = Form.parse(StoreIn, data, messages={"phone": "请输入正确的电话"})
        store = form.submit(page.db, lambda s, d: service.create_store(s, page.actor, ...))
        if store is None:                      # invalid input or a rule said no: nothing changed
            return page.render("console/store_form.html", form=form, status_code=form.status)
        return page.redirect(f"...", flash="门店已创建")

``Form.submit`` runs the action in its own write transaction. ``ValidationFailed`` becomes field
errors; other "the user can fix this" errors (409 conflicts, 429, 400) become a message above
the form (or on a field, via ``field_by_code``, which also claims e.g. a NotFound by its code);
other Forbidden / NotFound errors go on to the error page.
The transaction is rolled back in every case, so a refused form changes nothing.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, BeforeValidator, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from o2o.db import Database
from o2o.errors import AppError, BadRequest, Conflict, Gone, TooManyRequests, ValidationFailed
from o2o.money import MAX_FEN, format_yuan, parse_yuan
from o2o.web.csrf import CSRF_FIELD

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_INTEGER = re.compile(r"-?[0-9]{1,18}")
# Never echoed back into a re-rendered form.
SECRET_FIELDS = frozenset(
    {
        "password",
        "password_confirm",
        "current_password",
        "new_password",
        "new_password_confirm",
        CSRF_FIELD,
    }
)
# Errors a user can fix by changing the form (others go to the error page).
FORM_ERRORS = (ValidationFailed, Conflict, BadRequest, TooManyRequests, Gone)


async def read_form(request: Request) -> FormData:
    """Dependency: the posted form (cached by Starlette, so the CSRF check reuses it)."""
    return await request.form()


FormDataDep = Annotated[FormData, Depends(read_form)]


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, allows None) for ``X | None`` / ``Optional[X]`` / ``Annotated[...]``."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation, optional
        else:
            return annotation, optional


def _range(ctx: dict[str, Any], key: str) -> str:
    value = ctx.get(key)
    return "" if value is None else str(value)


def chinese_message(error: Mapping[str, Any]) -> str:
    """A pydantic error as a short Chinese sentence for the user."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "此项必填"
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "不能为空" if n == 1 else f"至少 {n} 个字符"
    if kind == "string_too_long":
        return f"不能超过 {_range(ctx, 'max_length')} 个字符"
    if kind == "string_pattern_mismatch":
        return "格式不正确"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "请输入整数"
    if kind in ("float_parsing", "float_type", "decimal_parsing", "decimal_type"):
        return "请输入数字"
    if kind in ("finite_number", "decimal_not_finite"):
        return "请输入有效的数字"
    if kind == "decimal_max_places":
        return f"最多保留 {_range(ctx, 'decimal_places')} 位小数"
    if kind in ("decimal_max_digits", "decimal_whole_digits"):
        return "数字位数过多"
    if kind == "greater_than_equal":
        return f"不能小于 {_range(ctx, 'ge')}"
    if kind == "less_than_equal":
        return f"不能大于 {_range(ctx, 'le')}"
    if kind == "greater_than":
        return f"必须大于 {_range(ctx, 'gt')}"
    if kind == "less_than":
        return f"必须小于 {_range(ctx, 'lt')}"
    if kind in ("literal_error", "enum"):
        return "请选择有效的选项"
    if kind == "too_long":
        return "选择的项目过多"
    if kind == "bool_parsing":
        return "请选择是或否"
    if kind == "value_error":
        # Our validators raise ValueError with a Chinese message; pydantic prefixes it.
        message = str(error.get("msg", ""))
        return message.removeprefix("Value error, ") or "输入无效"
    if kind in ("date_parsing", "date_from_datetime_parsing", "datetime_parsing"):
        return "请输入有效的日期"
    return "输入无效"


@dataclass
class Form(Generic[M]):
    """One form: the values shown in the inputs, errors per field, the parsed data if valid."""

    model: type[M]
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # A message for the whole form (shown above it), e.g. "该手机号已注册" or "操作过于频繁".
    error: str | None = None
    data: M | None = None
    status: int = 200

    @classmethod
    def blank(cls, model: type[M], **initial: Any) -> Form[M]:
        """An empty form for a GET, optionally pre-filled (e.g. an edit form)."""
        return cls(model, values={k: v for k, v in initial.items() if v is not None})

    @classmethod
    def parse(
        cls,
        model: type[M],
        form: FormData | Mapping[str, Any],
        *,
        messages: Mapping[str, str] | None = None,
        root_field: str | None = None,
    ) -> Form[M]:
        """Validate posted fields with ``model``.

        Empty inputs count as "not given" (so optional fields take their defaults and required
        ones say 此项必填); list fields read every value of the name; bool fields are checkboxes
        (present = true). ``messages`` replaces the generic messages of a field (e.g. "请输入
        11 位中国大陆手机号" for a pattern, a length or a missing value); errors of model-level validators go to ``root_field``
        or, without one, above the form.
        """
        messages = messages or {}
        values: dict[str, Any] = {}
        data: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            inner, _optional = _unwrap(info.annotation)
            if typing.get_origin(inner) is list:
                getlist = getattr(form, "getlist", None)
                raw_list = getlist(name) if getlist else form.get(name) or []
                items = [str(v).strip() for v in raw_list if isinstance(v, str) and v.strip()]
                values[name] = items
                if items or name in form:
                    data[name] = items
                continue
            if inner is bool:
                raw = form.get(name)
                checked = isinstance(raw, str) and raw.strip().lower() not in ("", "0", "false")
                values[name] = checked
                data[name] = checked
                continue
            raw = form.get(name)
            if not isinstance(raw, str):
                continue
            if name not in SECRET_FIELDS:
                values[name] = raw
            if raw.strip():
                # Integer fields of the API's schemas are strict (a JSON number, never text);
                # a form's "3" is the person's number, so it becomes 3 here (ASCII digits only:
                # anything else stays text and gets "请输入整数").
                plain_int = inner is int and not any(
                    isinstance(m, BeforeValidator) for m in info.metadata
                )  # (a yuan field converts its own text)
                data[name] = int(raw) if plain_int and _INTEGER.fullmatch(raw.strip()) else raw
        result = cls(model, values=values)
        try:
            result.data = model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err.get("loc", ())]
                message = chinese_message(err)
                if loc and loc[0] in messages:
                    message = messages[loc[0]]
                name = loc[0] if loc else (root_field or "")
                if name and name in model.model_fields:
                    result.errors.setdefault(name, message)
                else:
                    result.error = result.error or message
            result.status = 422
        return result

    @property
    def ok(self) -> bool:
        return self.data is not None and not self.errors and self.error is None

    def value(self, name: str, default: Any = "") -> Any:
        return self.values.get(name, default)

    def fail(self, message: str, field: str | None = None, status: int = 422) -> None:
        """Mark the form invalid (e.g. a check only the page does: 两次密码不一致)."""
        if field:
            self.errors.setdefault(field, message)
        else:
            self.error = message
        self.status = status

    def apply_error(self, exc: AppError, field_by_code: Mapping[str, str] | None = None) -> None:
        """Put a service's error on the form: per field where it names one."""
        errors = exc.extra.get("errors") or []
        placed = False
        for err in errors:
            name = err.get("field")
            if name in self.model.model_fields:
                self.errors.setdefault(name, str(err.get("message") or exc.detail))
                placed = True
        target = (field_by_code or {}).get(exc.code)
        if not placed:
            if target:
                self.errors.setdefault(target, exc.detail)
            else:
                self.error = exc.detail
        self.status = exc.status

    def submit(
        self,
        db: Database,
        action: Callable[[Session, M], T],
        *,
        field_by_code: Mapping[str, str] | None = None,
    ) -> T | None:
        """Run ``action(session, data)`` in one write transaction if the form is valid.

        Returns its result, or None when the form is invalid or the service refused it with an
        error the user can fix (the form then carries the messages; nothing was written).
        """
        if not self.ok:
            return None
        assert self.data is not None
        try:
            with db.transaction() as session:
                return action(session, self.data)
        except AppError as exc:
            # Also a form error when the page names a field for its code (e.g. a NotFound
            # "该手机号尚未注册" belongs next to the phone input).
            if not isinstance(exc, FORM_ERRORS) and exc.code not in (field_by_code or {}):
                raise
            self.apply_error(exc, field_by_code)
            return None


# --- money inputs --------------------------------------------------------------------------------


def yuan_input(*, min_fen: int = 0, max_fen: int = MAX_FEN) -> Any:
    """A form field where people type yuan ("12.50", "0.1", "¥1,280"); the model gets integer fen,
    exactly (``o2o.money.parse_yuan``, no floats), and a bad entry a Chinese message:

        class DealForm(Schema):
            price: Annotated[int, yuan_input(min_fen=1)]
    """

    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("请输入金额，如 12.50")
        fen = value * 100 if isinstance(value, int) else parse_yuan(value)
        if fen < min_fen:
            raise ValueError(f"金额不能低于 {format_yuan(min_fen)}")
        if fen > max_fen:
            raise ValueError(f"金额不能超过 {format_yuan(max_fen)}")
        return fen

    return BeforeValidator(convert)


def fen_to_input(fen: int | None) -> str:
    """The value a yuan input shows for an amount: 1250 → "12.50"."""
    return "" if fen is None else format_yuan(fen).removeprefix("¥")


def id_or_none(raw: Any, *, max_digits: int = 18) -> int | None:
    """A positive id from a query or form value, or None. ASCII digits only: ``str.isdigit``
    also accepts ``²`` and other digits ``int()`` refuses, which would end in a 500."""
    if not isinstance(raw, str):
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= max_digits:
        return int(raw) or None
    return None
