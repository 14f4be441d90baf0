"""Checks of what people type into carbon's writes (PUE values, whole-hour dates), and the error
they raise."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from ecoreport.carbon.importer import FactorError, require_whole_hour
from ecoreport.core.errors import DomainError


class CarbonInputError(DomainError):
    """A write refused for a reason a person can fix; the message says which (and ``field``,
    where one input is at fault)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def whole_hour(moment: datetime, field: str) -> datetime:
    try:
        return require_whole_hour(moment, field)
    except FactorError as exc:
        raise CarbonInputError(str(exc), field=field) from None


def pue_validate(value: object) -> Decimal:
    """The PUE as it would be stored, or CarbonInputError: the settings pages check a form with
    the same rule the API's writes apply, rather than a copy of it."""
    try:
        pue = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise CarbonInputError(f"PUE {value!r} is not a number") from None
    if not pue.is_finite() or pue < 1:
        raise CarbonInputError(
            f"PUE {value} is below 1.0: facility energy cannot be less than IT energy"
        )
    if pue > 5:
        raise CarbonInputError(f"PUE {value} is above 5.0; that is not a datacenter figure")
    return pue.quantize(Decimal("0.001"))
