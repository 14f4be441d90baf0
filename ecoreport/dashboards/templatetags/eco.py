"""Number formatting for the pages: every number with its precision, thousands separated."""

from __future__ import annotations

from typing import Any

from django import template

from ecoreport.policies import calc

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


@register.filter
def opens_django_admin(user: Any) -> bool:
    """Whether the Django admin has anything for ``user``: staff with a permission there.

    Being staff lets one sign in to the admin, whose index is empty without a permission ("You
    don't have permission to view or edit anything"): a link to it would be a dead end. The
    organization's own settings are /manage/, whatever the admin holds.
    """
    if not (user.is_active and user.is_staff):
        return False
    return bool(user.is_superuser or user.get_all_permissions())


_LABELS = {
    "comparator": calc.COMPARATOR_LABELS,
    "status": calc.STATUS_LABELS,
    "period": calc.PERIOD_LABELS,
    "baseline": calc.BASELINE_LABELS,
}


@register.filter
def label(value: Any, kind: str) -> str:
    """A stored value as people read it: ``{{ target.status|label:"status" }}`` is "at risk".

    ``kind`` is metric, comparator, status, period or baseline; a value with no label (a
    baseline such as 2025-Q4) is shown as it is.
    """
    text = "" if value is None else str(value)
    if kind == "metric":
        return calc.metric_label(text)
    return _LABELS[kind].get(text, text)
