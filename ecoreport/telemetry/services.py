"""``samples_ingest``: one ingest batch in, stored exactly once, in one transaction.

The hot path does a fixed number of queries per batch, whatever its size: look up the GPUs,
teams and projects it names, write samples and shares in bulk, mark the hours it touched.

On PostgreSQL the samples, their shares and the dirty hours go in through *one* statement
(``_PG_WRITE``): the rows travel as two JSON documents that the server turns into records
(``jsonb_to_recordset``), the samples are inserted with ``ON CONFLICT (gpu_id, start) DO
NOTHING RETURNING``, and only the samples that were really inserted get shares and mark hours.
Duplicates (the natural key gpu + start) are thus skipped by the database itself, also against a
concurrent batch carrying the same samples, and Python never builds a model instance per row.
See benchmarks/README.md ("Ingest") for what each step costs.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ecoreport.fleet.models import AgentCredential, Gpu, Host
from ecoreport.organizations.models import Organization, Project, Team
from ecoreport.telemetry.models import DirtyHour, EnergySample, IngestBatch, SampleShare
from ecoreport.telemetry.schema import BatchIn, GpuIn, SampleIn
from ecoreport.telemetry.validation import SHARE_SUM_TOLERANCE, normalize_label, sample_problem

log = logging.getLogger(__name__)

# last_seen_at on hosts and GPUs is refreshed at most this often: rewriting the same rows on
# every batch would make concurrent batches of one host queue on their row locks.
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass
class IngestResult:
    batch_id: str
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    replayed: bool = False
    hours: set[datetime] = field(default_factory=set)

    def as_response(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        }


def _hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hours_overlapped(start: datetime, end: datetime) -> list[datetime]:
    """Every hour [start, end) overlaps: the rollup books a sample's energy to each of them."""
    hours = [_hour_of(start)]
    # ``end`` is exclusive: a sample ending on the hour does not touch the next one.
    while hours[-1] + timedelta(hours=1) < end:
        hours.append(hours[-1] + timedelta(hours=1))
    return hours


def samples_ingest(
    *, credential: AgentCredential, batch: BatchIn, now: datetime | None = None
) -> IngestResult:
    """Store ``batch`` for the credential's organization and host; replay a known batch_id."""
    org = credential.organization
    batch_id = str(batch.batch_id)
    stored = IngestBatch.objects.filter(organization=org, batch_id=batch.batch_id).first()
    if stored is not None:
        return _replay(stored, batch_id)
    now = now or timezone.now()
    try:
        with transaction.atomic():
            # Claims the batch id first: a concurrent twin of this batch blocks on the unique
            # index here until this transaction ends, then replays our answer.
            record = IngestBatch.objects.create(
                organization=org, batch_id=batch.batch_id, host=credential.host, received_at=now
            )
            result = _ingest_locked(org=org, host=credential.host, batch=batch, now=now)
            result.batch_id = batch_id
            record.response = result.as_response()
            record.save(update_fields=["response"])
    except IntegrityError:
        stored = IngestBatch.objects.filter(organization=org, batch_id=batch.batch_id).first()
        if stored is None:
            raise
        return _replay(stored, batch_id)
    if result.hours:
        from ecoreport.accounting.tasks import enqueue_rollup

        transaction.on_commit(lambda: enqueue_rollup(organization_id=org.pk), robust=True)
    log.info(
        "ingest.batch org=%s host=%s batch_id=%s accepted=%d duplicates=%d rejected=%d",
        org.slug,
        credential.host.hostname,
        batch_id,
        result.accepted,
        result.duplicates,
        len(result.rejected),
    )
    return result


def _replay(stored: IngestBatch, batch_id: str) -> IngestResult:
    answer = stored.response or {}
    return IngestResult(
        batch_id=batch_id,
        accepted=answer.get("accepted", 0),
        duplicates=answer.get("duplicates", 0),
        rejected=answer.get("rejected", []),
        replayed=True,
    )


def _ingest_locked(*, org: Organization, host: Host, batch: BatchIn, now: datetime) -> IngestResult:
    result = IngestResult(batch_id=str(batch.batch_id))
    _touch_host(host=host, version=batch.agent.version, now=now)
    gpus = _gpus_upsert(org=org, host=host, inventory=batch.gpus, now=now)

    # Validate every sample; keep (gpu_id, start, sample) of the plausible ones.
    margin = settings.INGEST_POWER_MARGIN
    fallback_w = settings.INGEST_FALLBACK_MAX_POWER_W
    limits = {
        uuid: (gpu.pk, gpu.power_limit_w * margin if gpu.power_limit_w else fallback_w)
        for uuid, gpu in gpus.items()
    }
    good: list[Row] = []
    seen_keys: set[tuple[int, datetime]] = set()
    for index, sample in enumerate(batch.samples):
        limit = limits.get(sample.gpu_uuid)
        if limit is None:
            result.rejected.append(
                {"index": index, "field": "gpu_uuid", "error": "unknown GPU: list it in 'gpus'"}
            )
            continue
        problem = sample_problem(sample, max_power_w=limit[1], now=now)
        if problem is not None:
            result.rejected.append({"index": index, "field": problem[0], "error": problem[1]})
            continue
        key = (limit[0], sample.start)
        if key in seen_keys:
            result.duplicates += 1
            continue
        seen_keys.add(key)
        good.append((limit[0], sample.start, sample))
    if not good:
        return result

    teams, projects = _labels_resolve(org=org, samples=[s for _, _, s in good])
    # Sorted by the natural key so that two batches inserting overlapping samples take their
    # index locks in the same order and cannot deadlock.
    good.sort(key=_natural_key)
    if connection.vendor == "postgresql":
        accepted, hours = _write_postgres(
            org=org, host=host, rows=good, teams=teams, projects=projects, now=now
        )
        result.accepted = accepted
        result.duplicates += len(good) - accepted
        result.hours = hours
        return result

    inserted_ids = _samples_insert_sqlite(org=org, host=host, rows=good, now=now)
    result.accepted = len(inserted_ids)
    result.duplicates += len(good) - len(inserted_ids)
    shares: list[SampleShare] = []
    for gpu_id, start, sample in good:
        sample_id = inserted_ids.get((gpu_id, start))
        if sample_id is None:
            continue
        result.hours.update(_hours_overlapped(sample.start, sample.end))
        shares.extend(
            SampleShare(
                organization=org,
                sample_id=sample_id,
                team_id=team_id,
                project_id=project_id,
                job_id=job_id,
                user=user,
                share=share,
                energy_j=energy_j,
                attributed=attributed,
                idle=idle,
            )
            for team_id, project_id, job_id, user, share, energy_j, attributed, idle in _split(
                default_team_id=host.default_team_id,
                default_project_id=host.default_project_id,
                sample=sample,
                teams=teams,
                projects=projects,
            )
        )
    SampleShare.objects.bulk_create(shares, batch_size=2000)
    DirtyHour.objects.bulk_create(
        [DirtyHour(organization=org, hour=hour, created_at=now) for hour in sorted(result.hours)]
    )
    return result


# (gpu_id, start, sample): a plausible sample, keyed by its natural key.
Row = tuple[int, datetime, SampleIn]
_natural_key = operator.itemgetter(0, 1)
ShareRow = tuple[int | None, int | None, str, str, float, float, bool, bool]


def _split(
    *,
    default_team_id: int | None,
    default_project_id: int | None,
    sample: SampleIn,
    teams: dict[str | None, int | None],
    projects: dict[str | None, int | None],
) -> Iterator[ShareRow]:
    """The sample's energy as shares; their energies sum to the sample's energy.

    Each share is (team_id, project_id, job_id, user, share, energy_j, attributed, idle).
    ``teams`` and ``projects`` map the labels as the agent sent them to ids; the unattributed
    remainder goes to the host's defaults.
    """
    attributed_j = 0.0
    attributed_share = 0.0
    for part in sample.attribution:
        energy_j = sample.energy_j * part.share
        attributed_j += energy_j
        attributed_share += part.share
        yield (
            teams[part.team],
            projects[part.project],
            (part.job_id or "")[:128],
            (part.user or "")[:128],
            part.share,
            energy_j,
            True,
            False,
        )
    remainder_share = 1.0 - attributed_share
    if remainder_share > SHARE_SUM_TOLERANCE or not sample.attribution:
        yield (
            default_team_id,
            default_project_id,
            "",
            "",
            max(remainder_share, 0.0),
            # The remainder is computed by subtraction so that the shares of a sample sum
            # to its energy exactly, not to within rounding of each product.
            max(sample.energy_j - attributed_j, 0.0),
            False,
            not sample.attribution,
        )


def _touch_host(*, host: Host, version: str, now: datetime) -> None:
    stale = host.last_seen_at is None or now - host.last_seen_at > _TOUCH_EVERY
    if stale or host.agent_version != version:
        Host.objects.filter(pk=host.pk).update(last_seen_at=now, agent_version=version)


def _gpus_upsert(
    *, org: Organization, host: Host, inventory: list[GpuIn], now: datetime
) -> dict[str, Gpu]:
    """The organization's GPUs this batch may name, after applying the batch's inventory."""
    listed = {g.uuid: g for g in inventory}
    known = {g.uuid: g for g in Gpu.objects.for_org(org).filter(host=host)}
    missing = [u for u in listed if u not in known]
    if missing:
        # A GPU listed by this host but registered under another (moved between servers).
        for gpu in Gpu.objects.for_org(org).filter(uuid__in=missing):
            known[gpu.uuid] = gpu
    new = [
        Gpu(
            organization=org,
            host=host,
            uuid=g.uuid,
            index=g.index,
            name=g.name,
            memory_total_mib=g.memory_total_mib,
            power_limit_w=g.power_limit_w,
            last_seen_at=now,
        )
        for u, g in listed.items()
        if u not in known
    ]
    if new:
        Gpu.objects.bulk_create(new, ignore_conflicts=True)
        for gpu in Gpu.objects.for_org(org).filter(uuid__in=[g.uuid for g in new]):
            known[gpu.uuid] = gpu
    for u, g in listed.items():
        gpu = known[u]
        changes: dict[str, Any] = {}
        for attr in ("index", "name", "memory_total_mib", "power_limit_w"):
            value = getattr(g, attr)
            if value is not None and value != getattr(gpu, attr):
                changes[attr] = value
        if gpu.host_id != host.pk:
            changes["host"] = host
        if gpu.last_seen_at is None or now - gpu.last_seen_at > _TOUCH_EVERY:
            changes["last_seen_at"] = now
        if changes:
            Gpu.objects.filter(pk=gpu.pk).update(**changes)
            for attr, value in changes.items():
                setattr(gpu, attr, value)
    return known


def _labels_resolve(
    *, org: Organization, samples: list[SampleIn]
) -> tuple[dict[str | None, int | None], dict[str | None, int | None]]:
    """Label as sent → id for every team and project the samples name, registering new ones.

    Agents repeat a handful of labels over a thousand samples, so each distinct label is
    normalised once; a label with nothing left after normalising (and no label) maps to None.
    """
    raw_teams = {part.team for sample in samples for part in sample.attribution}
    raw_projects = {part.project for sample in samples for part in sample.attribution}
    return (
        _labels_ensure(Team, org=org, labels=raw_teams),
        _labels_ensure(Project, org=org, labels=raw_projects),
    )


def _labels_ensure(
    model: type[Team] | type[Project], *, org: Organization, labels: set[str | None]
) -> dict[str | None, int | None]:
    slugs = {label: normalize_label(label) for label in labels}
    ids = _slugs_ensure(model, org=org, slugs={s for s in slugs.values() if s is not None})
    return {label: ids[slug] if slug is not None else None for label, slug in slugs.items()}


def _slugs_ensure(
    model: type[Team] | type[Project], *, org: Organization, slugs: set[str]
) -> dict[str, int]:
    if not slugs:
        return {}
    found = dict(model.objects.for_org(org).filter(slug__in=slugs).values_list("slug", "id"))
    missing = slugs - found.keys()
    if missing:
        model.objects.bulk_create(
            [model(organization=org, slug=s, name=s, auto_created=True) for s in sorted(missing)],
            ignore_conflicts=True,
        )
        found.update(model.objects.for_org(org).filter(slug__in=missing).values_list("slug", "id"))
    return found


def _samples_insert_sqlite(
    *, org: Organization, host: Host, rows: list[Row], now: datetime
) -> dict[tuple[int, datetime], int]:
    """Insert the samples that are not stored yet; returns (gpu_id, start) → id of those.

    SQLite: the transaction holds the database's write lock (IMMEDIATE), so "which exist" and
    "insert the rest" cannot interleave with another writer.
    """
    gpu_ids = {gpu_id for gpu_id, _, _ in rows}
    starts = [start for _, start, _ in rows]
    existing = set(
        EnergySample.objects.filter(
            gpu_id__in=gpu_ids, start__gte=min(starts), start__lte=max(starts)
        ).values_list("gpu_id", "start")
    )
    objs = [
        EnergySample(
            organization=org,
            gpu_id=gpu_id,
            host=host,
            start=s.start,
            end=s.end,
            duration_s=(s.end - s.start).total_seconds(),
            energy_j=s.energy_j,
            method=s.method,
            gpu_util_pct=s.gpu_util_pct,
            mem_util_pct=s.mem_util_pct,
            mem_used_mib=s.mem_used_mib,
            power_max_w=s.power_max_w,
            temperature_c=s.temperature_c,
            received_at=now,
        )
        for gpu_id, start, s in rows
        if (gpu_id, start) not in existing
    ]
    created = EnergySample.objects.bulk_create(objs, batch_size=500)
    return {(o.gpu_id, o.start): o.pk for o in created}


# One round trip for the whole batch. The samples arrive sorted by the natural key (see
# ``_ingest_locked``) and are inserted in that order (``ORDER BY i``). ``ins`` holds only the
# samples this statement inserted, so duplicates get neither shares nor dirty hours; a data-
# modifying CTE sees the RETURNING rows of another, not the table, which is what we want.
# Column lists are positional in the JSON (arrays, not objects): smaller to encode and parse.
_PG_WRITE = """
WITH s AS (
    SELECT (r->>0)::int AS i, (r->>1)::bigint AS g, (r->>2)::timestamptz AS st,
           (r->>3)::timestamptz AS en, (r->>4)::float8 AS du, (r->>5)::float8 AS e,
           (r->>6) AS m, (r->>7)::float8 AS gu, (r->>8)::float8 AS mu, (r->>9)::float8 AS mm,
           (r->>10)::float8 AS pm, (r->>11)::float8 AS tc
    FROM jsonb_array_elements(%(samples)s::jsonb) AS r
), ins AS (
    INSERT INTO telemetry_energysample
        (organization_id, gpu_id, host_id, start, "end", duration_s, energy_j, method,
         gpu_util_pct, mem_util_pct, mem_used_mib, power_max_w, temperature_c, received_at)
    SELECT %(org)s, g, %(host)s, st, en, du, e, m, gu, mu, mm, pm, tc, %(now)s
    FROM s ORDER BY i
    ON CONFLICT (gpu_id, start) DO NOTHING
    RETURNING id, gpu_id, start, "end"
), keyed AS (
    SELECT ins.id, s.i FROM ins JOIN s ON s.g = ins.gpu_id AND s.st = ins.start
), shares AS (
    INSERT INTO telemetry_sampleshare
        (organization_id, sample_id, team_id, project_id, job_id, "user", share, energy_j,
         attributed, idle)
    SELECT %(org)s, keyed.id, (r->>1)::bigint, (r->>2)::bigint, r->>3, r->>4,
           (r->>5)::float8, (r->>6)::float8, (r->>7)::boolean, (r->>8)::boolean
    FROM jsonb_array_elements(%(shares)s::jsonb) AS r
    JOIN keyed ON keyed.i = (r->>0)::int
), hours AS (
    -- every hour a sample overlaps (its start's, and the next when it crosses the boundary)
    SELECT DISTINCT h.hour FROM ins CROSS JOIN LATERAL generate_series(
        date_trunc('hour', ins.start, 'UTC'), ins."end" - interval '1 microsecond', interval '1 hour'
    ) AS h(hour)
), marks AS (
    INSERT INTO telemetry_dirtyhour (organization_id, hour, created_at)
    SELECT %(org)s, hour, %(now)s FROM hours ORDER BY hour
)
SELECT (SELECT count(*) FROM ins), array(SELECT hour FROM hours)
"""

_json_encode = msgspec.json.Encoder().encode


def _write_postgres(
    *,
    org: Organization,
    host: Host,
    rows: list[Row],
    teams: dict[str | None, int | None],
    projects: dict[str | None, int | None],
    now: datetime,
) -> tuple[int, set[datetime]]:
    """Insert the samples not stored yet, their shares and dirty hours; (accepted, hours)."""
    samples: list[tuple[Any, ...]] = []
    shares: list[tuple[Any, ...]] = []
    default_team_id, default_project_id = host.default_team_id, host.default_project_id
    for i, (gpu_id, start, s) in enumerate(rows):
        samples.append(
            (
                i,
                gpu_id,
                start,
                s.end,
                (s.end - s.start).total_seconds(),
                s.energy_j,
                s.method,
                s.gpu_util_pct,
                s.mem_util_pct,
                s.mem_used_mib,
                s.power_max_w,
                s.temperature_c,
            )
        )
        for share in _split(
            default_team_id=default_team_id,
            default_project_id=default_project_id,
            sample=s,
            teams=teams,
            projects=projects,
        ):
            shares.append((i, *share))
    params = {
        "org": org.pk,
        "host": host.pk,
        "now": now,
        # msgspec writes floats with repr's precision (round-trip exact) and datetimes as
        # RFC 3339, both of which PostgreSQL's input functions read back exactly.
        "samples": _json_encode(samples).decode(),
        "shares": _json_encode(shares).decode(),
    }
    # Django's psycopg cursors bind parameters on the client: they would quote ~300 KB of JSON
    # into the SQL text (~5 ms a batch). A plain psycopg cursor on the same connection, in the
    # same transaction, sends them as parameters instead, and lets psycopg prepare the statement
    # once it has run a few times. Wrapped like Django's own cursors so that query logging and
    # execute_wrappers (tests count queries) still see it.
    raw = psycopg.Cursor(connection.connection)
    cursor = (
        connection.make_debug_cursor(raw)
        if connection.queries_logged
        else connection.make_cursor(raw)
    )
    with cursor:
        cursor.execute(_PG_WRITE, params)
        accepted, hours = cursor.fetchone()
    return accepted, set(hours)
