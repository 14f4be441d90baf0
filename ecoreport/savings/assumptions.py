"""The inputs of the savings levers: every number a lever assumes, with its default, the range it
may take, and where the default comes from (docs/savings.md cites the sources in full).

Pure: no database, no request. ``Assumptions.from_params`` reads overrides from a query-string
mapping (the API's and the calculator page's) and raises ``AssumptionError`` naming the
parameter and its allowed range when a value is not a number or falls outside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


class AssumptionError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Spec:
    minimum: float
    maximum: float
    help: str
    # The range found in the sources, shown next to the input (not enforced: a user may know better).
    typical: tuple[float, float] | None = None
    integer: bool = False


SPECS: dict[str, Spec] = {
    "idle_recoverable_pct": Spec(
        0,
        100,
        "share of measured idle energy that scaling down / powering off idle GPUs removes",
        typical=(50, 100),
    ),
    "low_util_threshold_pct": Spec(
        0,
        100,
        "a job or project whose energy-weighted GPU utilization is under this is a candidate",
        typical=(20, 40),
    ),
    "low_mem_threshold_pct": Spec(
        0,
        100,
        "a job or project whose peak GPU memory use (% of the GPU's memory) is under this "
        "is a candidate (it fits a MIG slice or a smaller GPU)",
        typical=(15, 50),
    ),
    "consolidation_reduction_pct": Spec(
        0,
        100,
        "energy of a candidate saved by sharing a GPU, MIG slices or a smaller GPU",
        typical=(20, 50),
    ),
    "flexible_pct": Spec(
        0,
        100,
        "share of each hour's work that may start later (batch training, evaluation)",
        typical=(10, 50),
    ),
    "timing_window_h": Spec(
        1,
        168,
        "flexible work may move to any hour of the same block of this many hours",
        typical=(12, 48),
        integer=True,
    ),
    "precision_reduction_pct": Spec(
        0,
        100,
        "energy saved by mixed precision (FP16/BF16 training, INT8 inference)",
        typical=(10, 40),
    ),
    "precision_already_pct": Spec(
        0,
        100,
        "share of the work that already uses reduced precision",
        typical=(0, 100),
    ),
    "architecture_reduction_pct": Spec(
        0,
        100,
        "energy saved by a smaller model (pruning, distillation, early exit)",
        typical=(20, 60),
    ),
    "architecture_applicable_pct": Spec(
        0,
        100,
        "share of the work where a smaller model would do",
        typical=(10, 50),
    ),
    "power_cap_reduction_pct": Spec(
        0,
        100,
        "energy saved by capping GPU power (at a few % longer run time)",
        typical=(5, 15),
    ),
    "power_cap_already_pct": Spec(
        0,
        100,
        "share of the work already running under a power cap",
        typical=(0, 100),
    ),
    "price_per_kwh": Spec(
        0,
        10,
        "electricity price per facility kWh for every site (overrides the site prices)",
    ),
}


@dataclass(frozen=True)
class Assumptions:
    """Defaults: the middle of the ranges in docs/savings.md, rounded down where the sources
    disagree (a savings estimate should not oversell)."""

    idle_recoverable_pct: float = 100.0
    low_util_threshold_pct: float = 30.0
    low_mem_threshold_pct: float = 25.0
    consolidation_reduction_pct: float = 30.0
    flexible_pct: float = 30.0
    timing_window_h: int = 24
    precision_reduction_pct: float = 20.0
    precision_already_pct: float = 0.0
    architecture_reduction_pct: float = 30.0
    architecture_applicable_pct: float = 20.0
    power_cap_reduction_pct: float = 12.0
    power_cap_already_pct: float = 0.0
    # None: each site's own price (SitePrice, else the default from the environment).
    price_per_kwh: float | None = None

    def __post_init__(self) -> None:
        for name, spec in SPECS.items():
            value = getattr(self, name)
            if value is None:
                continue
            _check(name, value, spec)

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], *, base: Assumptions | None = None
    ) -> Assumptions:
        """Overrides from query parameters named like the fields; other parameters are ignored
        (the same mapping carries scope, start, end and the page's own parameters)."""
        changes: dict[str, Any] = {}
        for name, spec in SPECS.items():
            raw = params.get(name)
            if raw is None or (isinstance(raw, str) and raw.strip() == ""):
                continue
            changes[name] = _parse(name, raw, spec)
        return replace(base or cls(), **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pick(self, *names: str) -> dict[str, Any]:
        return {name: getattr(self, name) for name in names}


def describe() -> list[dict[str, Any]]:
    """Every input with its default, allowed and typical range: what a form needs to render."""
    defaults = Assumptions()
    out = []
    for f in fields(Assumptions):
        spec = SPECS[f.name]
        out.append(
            {
                "name": f.name,
                "default": getattr(defaults, f.name),
                "minimum": spec.minimum,
                "maximum": spec.maximum,
                "typical": list(spec.typical) if spec.typical else None,
                "integer": spec.integer,
                "help": spec.help,
            }
        )
    return out


def _parse(name: str, raw: Any, spec: Spec) -> float | int:
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise AssumptionError(name, f"{raw!r} is not a number") from None
    if spec.integer:
        if not value.is_integer():
            raise AssumptionError(name, f"{raw!r} is not a whole number")
        value = int(value)
    _check(name, value, spec)
    return value


def _check(name: str, value: float, spec: Spec) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AssumptionError(name, f"{value!r} is not a finite number")
    if value < spec.minimum or value > spec.maximum:
        unit = "%" if name.endswith("_pct") else ""
        what = "a share" if name.endswith("_pct") else "a value"
        raise AssumptionError(
            name,
            f"{value:g}{unit} is outside the allowed range {spec.minimum:g} to {spec.maximum:g}{unit}"
            + (f" ({what} cannot be negative or above 100%)" if unit else ""),
        )
