"""Number formatting for the pages: every number with its precision, thousands separated."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def num(value: Any, decimals: int | None = None) -> str:
    if value is None or value == "":
        return "—"
    number = float(value)
    if decimals is None:
        decimals = 0 if abs(number) >= 100 else 1 if abs(number) >= 10 else 2
    text = f"{number:,.{int(decimals)}f}"
    # A tiny negative rounds to "-0.00": show the zero it is.
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text


@register.filter
def delta(value: Any) -> str:
    if not isinstance(value, int | float):
        return "no comparison"
    arrow = "▲" if value > 0 else "▼" if value < 0 else "="
    return f"{arrow} {value:+.1f}% vs previous"


@register.filter
def get(mapping: Any, key: str) -> Any:
    try:
        return mapping[key]
    except (KeyError, TypeError, IndexError):
        return None
