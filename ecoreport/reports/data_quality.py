"""The report's data quality section: how much of the period the organization's fleet measured
(GPUs known and reporting, GPU-hours, hours with no data, hosts that stopped) and how its energy
was measured (counter or integrated power). The fleet's, whatever the report's scope: a team
shares GPUs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max, OuterRef, Q, Subquery, Sum

from ecoreport.accounting.models import HourlyUsage
from ecoreport.carbon.emissions import S_PER_HOUR
from ecoreport.core.periods import CalendarPeriod
from ecoreport.fleet.models import Gpu, Host
from ecoreport.organizations.models import Organization
from ecoreport.reports import totals
from ecoreport.reports.totals import J_PER_KWH
from ecoreport.telemetry.models import EnergySample


def data_quality(organization: Organization, period: CalendarPeriod) -> dict[str, Any]:
    """Coverage of the organization's fleet (whatever the report's scope: a team shares GPUs)."""
    window = totals.window(HourlyUsage.objects.for_org(organization), period.start, period.end)
    per_gpu = {
        r["gpu_id"]: r
        for r in window.values("gpu_id", "host_id")
        .annotate(seconds=Sum("gpu_seconds"), energy_j=Sum("energy_j"), last=Max("hour"))
        .order_by()
    }
    known = Gpu.objects.for_org(organization).filter(
        Q(created_at__lt=period.end) | Q(pk__in=list(per_gpu))
    )
    # Bounded: each GPU's latest sample in the period through the (gpu, start) key, not a scan
    # of the raw table. A GPU's method follows its hardware and driver, not the hour.
    latest = (
        EnergySample.objects.filter(
            gpu=OuterRef("pk"), start__gte=period.start, start__lt=period.end
        )
        .order_by("-start")
        .values("method")[:1]
    )
    methods = dict(known.annotate(m=Subquery(latest)).values_list("pk", "m"))
    gpus_known = len(methods) if methods else known.count()
    by_method: dict[str, float] = {}
    for gpu_id, r in per_gpu.items():
        method = methods.get(gpu_id) or "unknown (no raw samples kept)"
        by_method[method] = by_method.get(method, 0.0) + (r["energy_j"] or 0.0)
    total_j = sum(by_method.values())
    expected_h = gpus_known * period.hours
    measured_h = sum((r["seconds"] or 0.0) for r in per_gpu.values()) / S_PER_HOUR
    silent = list(
        known.exclude(pk__in=list(per_gpu))
        .select_related("host")
        .order_by("host__hostname", "index")
        .values_list("host__hostname", "uuid")[:20]
    )
    hours = sorted(window.values_list("hour", flat=True).distinct().order_by())
    gaps = _gaps(hours, period)
    stale_before = period.end - timedelta(hours=24)
    # A host's last hour is its latest GPU's (same scan as the per-GPU sums).
    host_last: dict[int, datetime] = {}
    for r in per_gpu.values():
        host_last[r["host_id"]] = max(r["last"], host_last.get(r["host_id"], r["last"]))
    names = dict(Host.objects.filter(pk__in=list(host_last)).values_list("pk", "hostname"))
    stopped = sorted(
        (
            {"host": names.get(host_id, str(host_id)), "last_hour": last.isoformat()}
            for host_id, last in host_last.items()
            if last < stale_before
        ),
        key=lambda h: (h["last_hour"], h["host"]),
    )
    return {
        "gpus_known": gpus_known,
        "gpus_reporting": len(per_gpu),
        "hours_in_period": period.hours,
        "hours_with_data": len(hours),
        "expected_gpu_hours": expected_h,
        "measured_gpu_hours": measured_h,
        "coverage_pct": measured_h / expected_h * 100.0 if expected_h else None,
        "gpus_without_data": [{"host": h, "gpu": u} for h, u in silent],
        "gpus_without_data_count": gpus_known - len(per_gpu),
        "gaps": gaps[:10],
        "gap_count": len(gaps),
        "hosts_stopped": stopped[:20],
        "hosts_stopped_count": len(stopped),
        "energy_by_method": [
            {
                "method": m,
                "energy_kwh": j / J_PER_KWH,
                "share_pct": j / total_j * 100.0 if total_j else None,
            }
            for m, j in sorted(by_method.items(), key=lambda kv: -kv[1])
        ],
    }


def _gaps(hours: list[datetime], period: CalendarPeriod) -> list[dict[str, Any]]:
    """Runs of hours with no measurement from any GPU, longest first."""
    if not hours:
        return []
    present = set(hours)
    gaps, run_start = [], None
    moment = period.start
    while moment < period.end:
        if moment not in present and run_start is None:
            run_start = moment
        elif moment in present and run_start is not None:
            gaps.append((run_start, moment))
            run_start = None
        moment += timedelta(hours=1)
    if run_start is not None:
        gaps.append((run_start, period.end))
    gaps.sort(key=lambda g: (-(g[1] - g[0]), g[0]))
    return [
        {
            "start": s.isoformat(),
            "end": e.isoformat(),
            "hours": int((e - s).total_seconds() // 3600),
        }
        for s, e in gaps
    ]
