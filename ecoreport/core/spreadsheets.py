"""Cells for the CSV and XLSX files the product writes.

A spreadsheet opens a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, tab or
carriage return) as a formula: a job id of ``=HYPERLINK("http://x","y")`` sent by an agent
would become a live link or worse in an auditor's Excel (OWASP "CSV injection"). Every writer
passes its cells through :func:`spreadsheet_cell`, which prefixes such *strings* with a single
quote so they read as text. Numbers are left alone: a negative number stays a number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def spreadsheet_row(values: Iterable[Any]) -> list[Any]:
    return [spreadsheet_cell(v) for v in values]
