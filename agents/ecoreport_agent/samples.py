"""A measured interval as spool samples: cut at UTC hours, energy in whole millijoules.

Pure functions, used both for the intervals the loop closes and for the energy booked across
the agent's own downtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ecoreport_agent.clock import iso_utc
from ecoreport_agent.gpu import COUNTER
from ecoreport_agent.spool import HOUR_S, SpoolSample


def split_interval(
    start_wall: float, end_wall: float, energy_mj: int, counter_start_mj: int | None
) -> list[tuple[float, float, int, int | None, int | None]]:
    """Chunks cut at the UTC hour boundaries inside the interval (so each lies in one hour and
    none is longer than an hour), energy split by duration in whole millijoules (exact sum).

    Hour-aligned chunks let the backend apply each hour's carbon factor and PUE to that hour's
    energy without having to prorate them (it would; this is what it would get to).
    """
    duration = end_wall - start_wall
    edges = [start_wall]
    boundary = (math.floor(start_wall / HOUR_S) + 1) * HOUR_S
    while boundary < end_wall:
        edges.append(boundary)
        boundary += HOUR_S
    edges.append(end_wall)
    chunks = []
    booked = 0
    for k in range(len(edges) - 1):
        if k == len(edges) - 2:
            part = energy_mj - booked
        else:
            # cumulative share rounded down, so the parts are whole millijoules adding up exactly
            part = int(energy_mj * (edges[k + 1] - start_wall) / duration) - booked
        c0 = None if counter_start_mj is None else counter_start_mj + booked
        c1 = None if counter_start_mj is None else counter_start_mj + booked + part
        chunks.append((edges[k], edges[k + 1], part, c0, c1))
        booked += part
    return chunks


def mean(values: Sequence[float], digits: int) -> float | None:
    return round(sum(values) / len(values), digits) if values else None


def make_sample(
    gpu_uuid: str,
    method: str,
    start: float,
    end: float,
    energy_mj: int,
    counter_start: int | None,
    counter_end: int | None,
    stats: dict[str, Any],
    attribution: list[dict[str, Any]],
    split: str | None = None,
) -> SpoolSample:
    payload = {
        "gpu_uuid": gpu_uuid,
        "start": iso_utc(start),
        "end": iso_utc(end),
        "energy_j": energy_mj / 1000,
        "method": method,
        "gpu_util_pct": stats.get("gpu_util_pct"),
        "mem_util_pct": stats.get("mem_util_pct"),
        "mem_used_mib": stats.get("mem_used_mib"),
        "power_max_w": stats.get("power_max_w"),
        "temperature_c": stats.get("temperature_c"),
        "attribution": attribution,
    }
    if split is not None:
        # How the energy was divided among the processes (``booking.split_basis``); absent for
        # an idle interval and for energy booked across the agent's downtime.
        payload["split"] = split
    return SpoolSample(
        gpu_uuid=gpu_uuid,
        start_s=start,
        end_s=end,
        energy_j=energy_mj / 1000,
        method=method,
        payload=payload,
        counter_start_mj=counter_start if method == COUNTER else None,
        counter_end_mj=counter_end if method == COUNTER else None,
    )
