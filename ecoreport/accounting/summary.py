"""HourlySummary: HourlyUsage summed over GPUs and hosts, rebuilt for a range after every rollup
and every emissions rewrite."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection

from ecoreport.accounting.models import EmissionFigures, UsageMeasures, field_names
from ecoreport.carbon.resolver import NO_SITE

# Raw SQL: INSERT ... SELECT is beyond the ORM (and the CASE inside it with it).
_SUMMARY_COLUMNS = field_names(UsageMeasures, EmissionFigures)
_SUMMARY_INSERT = f"""
INSERT INTO accounting_hourlysummary
    (organization_id, hour, site_id, team_id, project_id, component, source,
     {", ".join(_SUMMARY_COLUMNS)}, fallback_energy_j)
SELECT organization_id, hour, site_id, team_id, project_id, component, source,
       {", ".join(f"SUM({c})" for c in _SUMMARY_COLUMNS)},
       SUM(CASE WHEN intensity_fallback THEN energy_j ELSE 0.0 END)
FROM accounting_hourlyusage
WHERE organization_id = %s AND hour >= %s AND hour < %s {{site_filter}}
GROUP BY organization_id, hour, site_id, team_id, project_id, component, source
"""  # noqa: S608 - column names are constants


def summary_rebuild(
    *, organization_id: int, start: datetime, end: datetime, site_keys: Iterable[int] | None = None
) -> None:
    """Replace HourlySummary in [start, end) (only these sites' rows, when given) from
    HourlyUsage. Two set-based statements whatever the number of rows."""
    ops = connection.ops
    params: list = [organization_id, ops.adapt_datetimefield_value(start)]
    params.append(ops.adapt_datetimefield_value(end))
    site_filter = ""
    if site_keys is not None:
        keys = sorted(site_keys)
        site_filter = f"AND COALESCE(site_id, {NO_SITE}) IN ({', '.join(['%s'] * len(keys))})"
        params += keys
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM accounting_hourlysummary "  # noqa: S608 - no user text
            f"WHERE organization_id = %s AND hour >= %s AND hour < %s {site_filter}",
            params,
        )
        cursor.execute(_SUMMARY_INSERT.format(site_filter=site_filter), params)
