"""Settings of the savings app, read from Django settings when the project sets them there and
from the environment otherwise (typed and strict, like ``ecoreport.settings``)."""

from __future__ import annotations

from django.conf import settings

from ecoreport.env import env_float, env_str


def default_price_per_kwh() -> float:
    return float(
        getattr(settings, "SAVINGS_DEFAULT_PRICE_PER_KWH", None)
        or env_float("SAVINGS_DEFAULT_PRICE_PER_KWH", 0.15)
    )


def default_currency() -> str:
    return str(getattr(settings, "SAVINGS_CURRENCY", None) or env_str("SAVINGS_CURRENCY", "EUR"))
