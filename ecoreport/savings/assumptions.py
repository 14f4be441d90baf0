"""The inputs of the savings levers: every number a lever assumes, with its default, the range it
may take, and where the default comes from: the source's own figure and where it is stated, or
``UNSOURCED`` where no source gives one (docs/savings.md shows the same table).

Pure: no database, no request. ``Assumptions.from_params`` reads overrides from a query-string
mapping (the API's and the calculator page's) and raises ``AssumptionError`` naming the
parameter and its allowed range when a value is not a number or falls outside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any

from ecoreport.core.errors import DomainError


class AssumptionError(DomainError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def api_details(self, default_field: str | None = None) -> Any:
        return {self.field: self.message}


UNSOURCED = "unsourced: engineering estimate"


class Basis(StrEnum):
    """How a default follows from what is known about it."""

    MIDPOINT = "midpoint"  # the middle of the typical range, exactly
    SOURCE = "source"  # the source's own figure (or arithmetic on it, said in ``rationale``)
    ESTIMATE = "estimate"  # a choice, explained in ``rationale``


@dataclass(frozen=True)
class Source:
    """Where a figure is stated: enough to find it in the publication and check it."""

    title: str  # authors, title, venue and year
    short: str  # what the page shows next to the input
    where: str  # section, table or abstract
    figure: str  # the source's own figure, in its own terms (time, speed, energy ...)


@dataclass(frozen=True)
class Spec:
    """One input of the savings levers: its allowed range, its default and where that default
    comes from. ``source`` is None where no source states a figure for it: the value is then an
    engineering estimate (``UNSOURCED``), and ``rationale`` says how it was chosen."""

    minimum: float
    maximum: float
    help: str
    default: float | None
    basis: Basis
    rationale: str
    # A range shown next to the input (not enforced: a user may know better), and where its
    # ends come from.
    typical: tuple[float, float] | None = None
    typical_basis: str | None = None
    source: Source | None = None
    integer: bool = False

    @property
    def provenance(self) -> str:
        """The source and where it says so, or the unsourced flag."""
        if self.source is None:
            return UNSOURCED
        return f"{self.source.title}, {self.source.where}"


MIG_GUIDE = Source(
    title="NVIDIA, Multi-Instance GPU User Guide",
    short="NVIDIA MIG User Guide",
    where="section Supported MIG Profiles (A100 table, column Fraction of Memory)",
    figure="the 1g, 2g and 3g profiles have 1/8, 2/8 and 4/8 of the GPU's memory "
    "(A100-SXM4-80GB: 1g.10gb, 2g.20gb, 3g.40gb)",
)
DISTILBERT = Source(
    title="V. Sanh, L. Debut, J. Chaumond, T. Wolf, DistilBERT, a distilled version of BERT: "
    "smaller, faster, cheaper and lighter, NeurIPS EMC2 workshop 2019 (arXiv:1910.01108)",
    short="Sanh et al. 2019 (DistilBERT)",
    where="abstract",
    figure="60 % faster than BERT-base at inference, i.e. 1 - 1/1.6 = 37.5 % less time; "
    "no energy figure",
)
POWER_CAP = Source(
    title="J. McDonald, B. Li, N. Frey, D. Tiwari, V. Gadepally, S. Samsi, Great Power, Great "
    "Responsibility: Recommendations for Reducing Energy for Training Language Models, "
    "Findings of NAACL 2022",
    short="McDonald et al. 2022 (Findings of NAACL)",
    where="abstract",
    figure="power-capping can enable a 15 % decrease in energy usage with a marginal increase in "
    "computation time when training a transformer-based language model",
)

SPECS: dict[str, Spec] = {
    "idle_recoverable_pct": Spec(
        0,
        100,
        "share of measured idle energy that scaling down / powering off idle GPUs removes",
        default=100.0,
        basis=Basis.ESTIMATE,
        rationale="all of the measured idle energy: the upper end of the range. A pool kept "
        "warm for fast starts keeps part of it; set the share you would keep.",
        typical=(50, 100),
        typical_basis=UNSOURCED,
    ),
    "low_util_threshold_pct": Spec(
        0,
        100,
        "a job or project whose energy-weighted GPU utilization is under this is a candidate",
        default=30.0,
        basis=Basis.MIDPOINT,
        rationale="the middle of the typical range",
        typical=(20, 40),
        typical_basis=UNSOURCED,
    ),
    "low_mem_threshold_pct": Spec(
        0,
        100,
        "a job or project whose peak GPU memory use (% of the GPU's memory) is under this "
        "is a candidate (it fits a MIG slice or a smaller GPU)",
        default=25.0,
        basis=Basis.SOURCE,
        rationale="the memory of a 2g MIG profile (2/8 of the GPU's): a job under it fits that "
        "slice. Not the middle of the range.",
        typical=(12.5, 50),
        typical_basis="the 1g to 3g MIG profiles: 1/8 to 4/8 of the GPU's memory",
        source=MIG_GUIDE,
    ),
    "consolidation_reduction_pct": Spec(
        0,
        100,
        "energy of a candidate saved by sharing a GPU, MIG slices or a smaller GPU",
        default=30.0,
        basis=Basis.ESTIMATE,
        rationale="a planning figure below the middle (35) of the range, so as not to oversell: "
        "no source gives the energy saved by consolidating jobs; measure a pilot.",
        typical=(20, 50),
        typical_basis=UNSOURCED,
    ),
    "flexible_pct": Spec(
        0,
        100,
        "share of each hour's work that may start later (batch training, evaluation)",
        default=30.0,
        basis=Basis.MIDPOINT,
        rationale="the middle of the typical range; the share depends on your work",
        typical=(10, 50),
        typical_basis=UNSOURCED,
    ),
    "timing_window_h": Spec(
        1,
        168,
        "flexible work may move to any hour of the same block of this many hours",
        default=24,
        basis=Basis.ESTIMATE,
        rationale="one day, so that a block spans a whole daily cycle of grid intensity. Not "
        "the middle (30) of the range.",
        typical=(12, 48),
        typical_basis=UNSOURCED,
        integer=True,
    ),
    "precision_reduction_pct": Spec(
        0,
        100,
        "energy saved by mixed precision (FP16/BF16 training, INT8 inference)",
        default=20.0,
        basis=Basis.ESTIMATE,
        rationale="below the middle (25) of the range. The sources give speedups, not energy "
        "(NVIDIA Automatic Mixed Precision: up to 3x faster training on Volta and Turing GPUs; "
        "Micikevicius et al., ICLR 2018: half the memory, faster arithmetic): a run that is "
        "faster at a higher board power saves less energy than it saves time.",
        typical=(10, 40),
        typical_basis=UNSOURCED,
    ),
    "precision_already_pct": Spec(
        0,
        100,
        "share of the work that already uses reduced precision",
        default=0.0,
        basis=Basis.ESTIMATE,
        rationale="none assumed: set the share of your work already in BF16/FP16/INT8",
    ),
    "architecture_reduction_pct": Spec(
        0,
        100,
        "energy saved by a smaller model (pruning, distillation, early exit)",
        default=37.5,
        basis=Basis.SOURCE,
        rationale="DistilBERT's 60 % faster inference is 1 - 1/1.6 = 37.5 % less time, taken as "
        "37.5 % less energy at the same power (the paper gives time, not energy). Not the "
        "middle of the range.",
        typical=(20, 40),
        typical_basis="40: DeeBERT (Xin et al., ACL 2020, abstract: up to ~40 % less inference "
        "time); 20: " + UNSOURCED,
        source=DISTILBERT,
    ),
    "architecture_applicable_pct": Spec(
        0,
        100,
        "share of the work where a smaller model would do",
        default=20.0,
        basis=Basis.ESTIMATE,
        rationale="below the middle (30) of the range, so as not to oversell; depends on your work",
        typical=(10, 50),
        typical_basis=UNSOURCED,
    ),
    "power_cap_reduction_pct": Spec(
        0,
        100,
        "energy saved by capping GPU power (for a somewhat longer run time)",
        default=15.0,
        basis=Basis.SOURCE,
        rationale="the source's figure, for training a transformer language model; the top of "
        "the range. Zeus (You, Chung, Chowdhury, NSDI 2023) reports 15.3-75.8 % better energy "
        "efficiency from tuning the batch size and the power limit together, not from a power "
        "cap alone: it is not used here.",
        typical=(5, 15),
        typical_basis="15: McDonald et al. 2022; 5: " + UNSOURCED,
        source=POWER_CAP,
    ),
    "power_cap_already_pct": Spec(
        0,
        100,
        "share of the work already running under a power cap",
        default=0.0,
        basis=Basis.ESTIMATE,
        rationale="none assumed: set the share of your work already capped",
    ),
    "price_per_kwh": Spec(
        0,
        10,
        "electricity price per facility kWh for every site (overrides the site prices)",
        default=None,
        basis=Basis.ESTIMATE,
        rationale="none: each site's own price (SitePrice), else SAVINGS_DEFAULT_PRICE_PER_KWH",
    ),
}


def _default(name: str) -> float:
    value = SPECS[name].default
    assert value is not None, name
    return float(value)


@dataclass(frozen=True)
class Assumptions:
    """The inputs of one savings answer. Defaults come from ``SPECS``, where each says how it
    was chosen (``basis``, ``rationale``) and which source states it, if any."""

    idle_recoverable_pct: float = _default("idle_recoverable_pct")
    low_util_threshold_pct: float = _default("low_util_threshold_pct")
    low_mem_threshold_pct: float = _default("low_mem_threshold_pct")
    consolidation_reduction_pct: float = _default("consolidation_reduction_pct")
    flexible_pct: float = _default("flexible_pct")
    timing_window_h: int = int(_default("timing_window_h"))
    precision_reduction_pct: float = _default("precision_reduction_pct")
    precision_already_pct: float = _default("precision_already_pct")
    architecture_reduction_pct: float = _default("architecture_reduction_pct")
    architecture_applicable_pct: float = _default("architecture_applicable_pct")
    power_cap_reduction_pct: float = _default("power_cap_reduction_pct")
    power_cap_already_pct: float = _default("power_cap_already_pct")
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


def source_record(name: str) -> dict[str, Any]:
    """Where an input's default comes from, as an answer carries it: the source (title, where it
    is stated, its own figure) or ``unsourced`` set to the flag, never both."""
    spec = SPECS[name]
    return {
        "source": asdict(spec.source) if spec.source is not None else None,
        "unsourced": UNSOURCED if spec.source is None else None,
        "default_basis": spec.basis.value,
        "rationale": spec.rationale,
        "typical_basis": spec.typical_basis,
    }


def describe() -> list[dict[str, Any]]:
    """Every input with its default, allowed and typical range and where the default comes
    from: what a form needs to render."""
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
                **source_record(f.name),
            }
        )
    return out


def sources_used(assumptions: Assumptions) -> dict[str, dict[str, Any]]:
    """For one answer: each input's value used, its default, and where the default comes from."""
    defaults = Assumptions()
    return {
        f.name: {
            "value": getattr(assumptions, f.name),
            "default": getattr(defaults, f.name),
            **source_record(f.name),
        }
        for f in fields(Assumptions)
    }


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
