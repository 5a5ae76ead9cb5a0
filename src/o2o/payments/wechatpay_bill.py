"""WeChat Pay trade bill (交易账单) parsing, for reconciliation.

The file WeChat Pay serves from the ``download_url`` of ``GET /v3/bill/tradebill`` is CSV:

    交易时间,公众账号ID,商户号,特约商户号,...,应结订单金额,...,订单金额,申请退款金额,费率备注
    `2024-05-01 10:00:01,`wx...,`1900000109,`0,...,`12.34,...
    总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额
    `2,`24.68,`1.00,`0.00,`0.15,`24.68,`1.00

Every value carries a leading backtick (so spreadsheets keep long numbers as text) and
amounts are yuan with two decimals. We key rows by the header so extra or reordered
columns (partner bills, newer formats) keep working, and convert amounts to integer fen
with exact decimal parsing.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

SUMMARY_FIRST_COLUMN = "总交易单数"
_YUAN = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")
_COUNT_COLUMNS = frozenset({"总交易单数"})


def yuan_to_fen(text: str) -> int:
    """``"12.34"`` → ``1234`` exactly; raises ValueError for anything not a whole fen.

    Digits beyond the second decimal are allowed only when they are zeros ("0.60000").
    """
    match = _YUAN.match(text.strip())
    if not match:
        raise ValueError(f"not an amount in yuan: {text!r}")
    sign, whole, fraction = match.groups()
    fraction = fraction or ""
    if fraction[2:].strip("0"):
        raise ValueError(f"amount has fractions of a fen: {text!r}")
    fen = int(whole) * 100 + int((fraction[:2]).ljust(2, "0"))
    return -fen if sign else fen


def is_amount_column(name: str) -> bool:
    return "金额" in name or name == "手续费"


def _clean(value: str) -> str:
    value = value.strip()
    if value.startswith("`"):
        value = value[1:]
    return value.strip()


def _convert(name: str, value: str) -> str | int:
    if name in _COUNT_COLUMNS:
        return int(value or "0")
    if is_amount_column(name):
        # An empty amount cell means nothing of that kind happened on the row.
        return yuan_to_fen(value) if value else 0
    return value


@dataclass(frozen=True)
class TradeBill:
    header: list[str]
    rows: list[dict[str, str | int]]
    summary: dict[str, str | int]


def parse_trade_bill(data: str | bytes) -> TradeBill:
    """Parse a trade bill into rows and the summary; amounts become integer fen."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.lstrip("\ufeff")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty trade bill")
    records = list(csv.reader(lines))
    header = [_clean(name) for name in records[0]]
    summary_at = next(
        (
            i
            for i, rec in enumerate(records[1:], start=1)
            if rec and _clean(rec[0]) == SUMMARY_FIRST_COLUMN
        ),
        None,
    )
    if summary_at is None or summary_at + 1 >= len(records):
        raise ValueError("trade bill has no summary section")
    rows: list[dict[str, str | int]] = []
    for line_no, rec in enumerate(records[1:summary_at], start=2):
        if len(rec) != len(header):
            raise ValueError(f"line {line_no}: {len(rec)} fields, header has {len(header)}")
        rows.append({name: _convert(name, _clean(v)) for name, v in zip(header, rec, strict=True)})
    summary_header = [_clean(name) for name in records[summary_at]]
    summary_values = records[summary_at + 1]
    if len(summary_values) != len(summary_header):
        raise ValueError("trade bill summary does not match its header")
    summary = {
        name: _convert(name, _clean(v))
        for name, v in zip(summary_header, summary_values, strict=True)
    }
    if len(records) > summary_at + 2:
        raise ValueError("unexpected lines after the trade bill summary")
    return TradeBill(header=header, rows=rows, summary=summary)
