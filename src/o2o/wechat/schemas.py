"""API shapes for WeChat sign-in."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from o2o.schemas import Schema


class MiniProgramLoginIn(Schema):
    # What wx.login gives the mini-program (single use, 5 minutes).
    code: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")]
