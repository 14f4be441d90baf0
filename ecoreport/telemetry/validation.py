"""Per-sample plausibility rules. Pure functions: no database, tested on their own."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from functools import lru_cache

from ecoreport.telemetry.schema import SampleIn

MAX_INTERVAL_S = 3600.0
FUTURE_TOLERANCE = timedelta(minutes=5)
# Float noise from summing shares computed on the agent (0.1 + 0.2 + 0.7 > 1).
SHARE_SUM_TOLERANCE = 1e-9

_LABEL_BAD_CHARS = re.compile(r"[^a-z0-9._-]+")


@lru_cache(maxsize=4096)  # agents repeat the same few labels on every sample
def normalize_label(value: str | None) -> str | None:
    """Turn a free-form job label (``ECOREPORT_TEAM="NLP Research"``) into a slug.

    Lower-cased, runs of other characters become '-', at most 64 characters. A label with
    nothing left is treated as absent rather than invented.
    """
    if value is None:
        return None
    slug = _LABEL_BAD_CHARS.sub("-", value.strip().lower()).strip("-._")[:64]
    return slug or None


def sample_problem(
    sample: SampleIn,
    *,
    max_power_w: float,
    now: datetime,
) -> tuple[str, str] | None:
    """The first reason ``sample`` is implausible, as (field, message), or None if it is fine."""
    energy = sample.energy_j
    if not math.isfinite(energy):
        return ("energy_j", "must be a finite number")
    if energy < 0:
        return ("energy_j", "must not be negative")
    duration_s = (sample.end - sample.start).total_seconds()
    if duration_s <= 0:
        return ("end", "must be after start")
    if duration_s > MAX_INTERVAL_S:
        return ("end", f"interval of {duration_s:.0f} s is longer than {MAX_INTERVAL_S:.0f} s")
    if sample.end > now + FUTURE_TOLERANCE:
        return ("end", "is more than 5 minutes in the future")
    max_energy_j = max_power_w * duration_s
    if energy > max_energy_j:
        return (
            "energy_j",
            f"{energy:.1f} J in {duration_s:.0f} s is more than the GPU can draw "
            f"({max_energy_j:.1f} J at {max_power_w:.0f} W)",
        )
    for name in ("gpu_util_pct", "mem_util_pct"):
        value = getattr(sample, name)
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= 100.0):
            return (name, "must be between 0 and 100")
    for name in ("mem_used_mib", "power_max_w"):
        value = getattr(sample, name)
        if value is not None and not (math.isfinite(value) and value >= 0.0):
            return (name, "must be a finite, non-negative number")
    if sample.temperature_c is not None and not math.isfinite(sample.temperature_c):
        return ("temperature_c", "must be a finite number")
    total = 0.0
    for i, part in enumerate(sample.attribution):
        if not (math.isfinite(part.share) and 0.0 < part.share <= 1.0):
            return (f"attribution[{i}].share", "must be in (0, 1]")
        total += part.share
    if total > 1.0 + SHARE_SUM_TOLERANCE:
        return ("attribution", f"shares sum to {total:.6f}, more than 1")
    return None
