"""``samples_ingest``: one ingest batch in, stored exactly once, in one transaction.

The hot path does a fixed number of queries per batch, whatever its size: look up the GPUs,
teams and projects it names, write samples and shares in bulk, mark the hours it touched.

On PostgreSQL the samples, their shares and the dirty hours go in through *one* statement
(``_PG_WRITE``): the rows travel as two JSON documents that the server turns into records
(``jsonb_to_recordset``), the samples are inserted with ``ON CONFLICT (gpu_id, start) DO
NOTHING RETURNING``, and only the samples that were really inserted get shares and mark hours.
Python never builds a model instance per row. See benchmarks/README.md ("Ingest") for what each
step costs.

For each GPU the stored intervals are disjoint: an exact duplicate (same GPU, start, end and
energy) is counted as a duplicate, any other overlap is rejected. The batch first locks the rows
of the GPUs it may name (``SELECT ... FOR NO KEY UPDATE`` in id order, ``_gpus_upsert``), so two
batches of one GPU take turns and each checks against what the other committed; then each
GPU's latest stored interval is read (one probe of the (gpu, start) index per GPU): if it ends
by the batch's first start for that GPU (an agent appending) nothing stored can overlap, else
every sample of that GPU is checked against the one stored interval that can overlap it (the
greatest start before its end: one more probe per sample). No exclusion constraint is involved,
so the same works on a time-partitioned raw table, where PostgreSQL 15 has none. On SQLite the
transaction holds the database's write lock, which serialises batches anyway.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ecoreport.core.enqueue import enqueue_debounced, enqueue_on_commit
from ecoreport.core.periods import hour_floor
from ecoreport.fleet.models import AgentCredential, Gpu, Host
from ecoreport.fleet.services import gpu_claim_conflict_record
from ecoreport.organizations.models import Membership, Organization, Project, Role, Team
from ecoreport.telemetry.models import (
    DirtyHour,
    EnergySample,
    IngestBatch,
    LabelBudgetNotice,
    SampleShare,
)
from ecoreport.telemetry.schema import BatchIn, GpuIn, SampleIn
from ecoreport.telemetry.validation import (
    LABEL_SHORT_MAX_CHARS,
    MAX_INTERVAL_S,
    SHARE_SUM_TOLERANCE,
    Interval,
    clean_label,
    interval_conflict,
    label_display,
    label_slug,
    sample_problem,
)

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
    # Stored, but not quite as sent: a label cleaned or truncated, or not registered because
    # the label budget is spent ({"index", "field", "warning"}).
    warnings: list[dict[str, Any]] = field(default_factory=list)
    replayed: bool = False
    hours: set[datetime] = field(default_factory=set)

    def as_response(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "batch_id": self.batch_id,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": sorted(self.rejected, key=operator.itemgetter("index")),
        }
        # Additive: present only when there is something to say, so that the answer of an
        # ordinary batch is what it always was.
        if self.warnings:
            answer["warnings"] = self.warnings
        return answer


# At most this many warnings in an answer; the last one says how many more there were.
MAX_WARNINGS = 100


def _hours_overlapped(start: datetime, end: datetime) -> list[datetime]:
    """Every hour [start, end) overlaps: the rollup books a sample's energy to each of them."""
    hours = [hour_floor(start)]
    # ``end`` is exclusive: a sample ending on the hour does not touch the next one.
    while hours[-1] + timedelta(hours=1) < end:
        hours.append(hours[-1] + timedelta(hours=1))
    return hours


def samples_ingest(
    *,
    credential: AgentCredential,
    batch: BatchIn,
    now: datetime | None = None,
    max_sample_age: timedelta | None = None,
) -> IngestResult:
    """Store ``batch`` for the credential's organization and host; replay a known batch_id.

    Samples that started more than ``max_sample_age`` before ``now`` are rejected (default:
    ``INGEST_MAX_SAMPLE_AGE_DAYS``; the demo's generated history passes its own).
    """
    org = credential.organization
    batch_id = str(batch.batch_id)
    now = now or timezone.now()
    try:
        with transaction.atomic():
            # Claims the batch id first: a concurrent twin of this batch waits on the unique
            # index here until this transaction ends, then replays our answer. A batch id
            # already stored claims nothing and is replayed below.
            record_id = _batch_claim(org=org, host=credential.host, batch=batch, now=now)
            if record_id is not None:
                result = _ingest_locked(
                    org=org,
                    host=credential.host,
                    batch=batch,
                    now=now,
                    oldest=now
                    - (max_sample_age or timedelta(days=settings.INGEST_MAX_SAMPLE_AGE_DAYS)),
                )
                result.batch_id = batch_id
                IngestBatch.objects.filter(pk=record_id).update(response=result.as_response())
    except IntegrityError:
        stored = IngestBatch.objects.filter(organization=org, batch_id=batch.batch_id).first()
        if stored is None:
            raise
        return _replay(stored, batch_id)
    if record_id is None:
        stored = IngestBatch.objects.filter(organization=org, batch_id=batch.batch_id).first()
        if stored is None:  # deleted since it conflicted (retention): the agent retries
            raise IntegrityError(f"ingest batch {batch_id}: neither claimed nor stored")
        return _replay(stored, batch_id)
    if result.hours:
        transaction.on_commit(rollup_soon, robust=True)
    log.info(
        "ingest.batch org=%s host=%s batch_id=%s accepted=%d duplicates=%d rejected=%d warnings=%d",
        org.slug,
        credential.host.hostname,
        batch_id,
        result.accepted,
        result.duplicates,
        len(result.rejected),
        len(result.warnings),
    )
    return result


# Ingest commits many batches a second; one rollup a second covers them all (it claims the
# dirty hours of every organization). Hours it misses, say with the broker down, are rolled up
# by the periodic sweep (``rollup-sweep`` in ``ecoreport.schedules``).
ROLLUP_TASK = "accounting.rollup_dirty_hours"
ROLLUP_DEBOUNCE_S = 1


def rollup_soon() -> None:
    """Ask for a rollup of the dirty hours (debounced); called on commit by every way in."""
    enqueue_debounced(ROLLUP_TASK, key="accounting:rollup-pending", window_s=ROLLUP_DEBOUNCE_S)


def hours_mark_dirty(*, org: Organization, hours: Iterable[datetime], now: datetime) -> None:
    """Mark these hours of ``org`` for the rollup (``accounting.rollup_dirty_hours``)."""
    DirtyHour.objects.bulk_create(
        [DirtyHour(organization=org, hour=hour, created_at=now) for hour in sorted(set(hours))]
    )


_BATCH_CLAIM = """
INSERT INTO telemetry_ingestbatch (organization_id, batch_id, host_id, received_at, response)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (organization_id, batch_id) DO NOTHING
RETURNING id
"""


def _batch_claim(*, org: Organization, host: Host, batch: BatchIn, now: datetime) -> int | None:
    """Id of the new IngestBatch row for ``batch``; None when the organization already has its
    batch id (a retry: replay the stored answer).

    One statement where a look-up before ``create()`` took two: ``ON CONFLICT DO NOTHING`` waits
    for a concurrent twin's transaction like the unique index did, then yields no row if the
    twin committed (or inserts ours if it rolled back).
    """
    meta = IngestBatch._meta
    fields = [meta.get_field(name) for name in ("batch_id", "received_at", "response")]
    batch_id, received_at, response = (
        f.get_db_prep_save(value, connection)
        for f, value in zip(fields, (batch.batch_id, now, {}), strict=True)
    )
    with connection.cursor() as cursor:
        cursor.execute(_BATCH_CLAIM, [org.pk, batch_id, host.pk, received_at, response])
        row = cursor.fetchone()
    return row[0] if row is not None else None


def _replay(stored: IngestBatch, batch_id: str) -> IngestResult:
    answer = stored.response or {}
    return IngestResult(
        batch_id=batch_id,
        accepted=answer.get("accepted", 0),
        duplicates=answer.get("duplicates", 0),
        rejected=answer.get("rejected", []),
        warnings=answer.get("warnings", []),
        replayed=True,
    )


def _ingest_locked(
    *, org: Organization, host: Host, batch: BatchIn, now: datetime, oldest: datetime
) -> IngestResult:
    result = IngestResult(batch_id=str(batch.batch_id))
    _touch_host(host=host, version=batch.agent.version, now=now)
    stored_gpus, claimed = _gpus_upsert(org=org, host=host, inventory=batch.gpus, now=now)

    # Validate every sample against the power limit the inventory held *before* this batch (a
    # GPU seen for the first time: the one it declares), so that a batch cannot raise the limit
    # its own samples are judged by.
    margin = settings.INGEST_POWER_MARGIN
    fallback_w = settings.INGEST_FALLBACK_MAX_POWER_W
    limits = {
        uuid: (gpu_id, limit_w * margin if limit_w else fallback_w)
        for uuid, (gpu_id, limit_w) in stored_gpus.items()
    }
    candidates: list[tuple[int, datetime, int, SampleIn]] = []
    refused: Counter[str] = Counter()  # samples refused per GPU another live host reports
    for index, sample in enumerate(batch.samples):
        limit = limits.get(sample.gpu_uuid)
        if limit is None:
            if sample.gpu_uuid in claimed:
                refused[sample.gpu_uuid] += 1
                error = claimed[sample.gpu_uuid].reason
            else:
                error = "unknown GPU: list it in 'gpus'"
            result.rejected.append({"index": index, "field": "gpu_uuid", "error": error})
            continue
        problem = sample_problem(sample, max_power_w=limit[1], now=now, oldest=oldest)
        if problem is not None:
            result.rejected.append({"index": index, "field": problem[0], "error": problem[1]})
            continue
        # In range now, so the conversion cannot overflow; PostgreSQL refuses offsets beyond
        # +-15:59 (RFC 3339 allows +23:59), and UTC is what is stored anyway. Agents send "Z".
        if sample.start.tzinfo is not UTC:
            sample.start = sample.start.astimezone(UTC)
        if sample.end.tzinfo is not UTC:
            sample.end = sample.end.astimezone(UTC)
        candidates.append((limit[0], sample.start, index, sample))

    for gpu_uuid, count in refused.items():
        gpu_claim_conflict_record(
            organization=org, gpu_id=claimed[gpu_uuid].gpu_id, claimant=host, samples=count, now=now
        )
        log.warning(
            "ingest.gpu_claimed_elsewhere org=%s host=%s gpu=%s owner=%s refused=%d",
            org.slug,
            host.hostname,
            gpu_uuid,
            claimed[gpu_uuid].owner,
            count,
        )

    # Within the batch: sorted by GPU and start, a sample can only overlap the last one kept of
    # its GPU (those kept are disjoint). Sorted by the natural key also so that two batches
    # inserting the same samples take their index locks in one order and cannot deadlock.
    # (The sort is stable and candidates are in batch order: ties keep the first sent first.)
    candidates.sort(key=_natural_key)
    good: list[Row] = []
    indices: list[int] = []  # the batch index of each row of ``good``
    last: tuple[int, datetime, int, SampleIn] | None = None
    for gpu_id, start, index, sample in candidates:
        if last is not None and last[0] == gpu_id and start < last[3].end:
            kept = last[3]
            if start == last[1] and sample.end == kept.end and sample.energy_j == kept.energy_j:
                result.duplicates += 1
            else:
                result.rejected.append(
                    _overlap(index, kept.start, kept.end, f"sample {last[2]} of this batch")
                )
            continue
        last = (gpu_id, start, index, sample)
        good.append((gpu_id, start, sample))
        indices.append(index)
    if not good:
        return result

    teams, projects = _labels_resolve(
        org=org, rows=good, indices=indices, now=now, warnings=result.warnings
    )
    if connection.vendor == "postgresql":
        accepted, hours, overlaps = _write_postgres(
            org=org, host=host, rows=good, teams=teams, projects=projects, now=now
        )
        result.accepted = accepted
        result.duplicates += len(good) - accepted - len(overlaps)
        result.rejected.extend(
            _overlap(indices[i], start, end, "a stored sample") for i, start, end in overlaps
        )
        result.hours = hours
        return result

    inserted_ids, overlaps = _samples_insert_sqlite(org=org, host=host, rows=good, now=now)
    result.accepted = len(inserted_ids)
    result.duplicates += len(good) - len(inserted_ids) - len(overlaps)
    result.rejected.extend(
        _overlap(indices[i], start, end, "a stored sample") for i, start, end in overlaps
    )
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
    hours_mark_dirty(org=org, hours=result.hours, now=now)
    return result


# (gpu_id, start, sample): a plausible sample, keyed by its natural key.
Row = tuple[int, datetime, SampleIn]
_natural_key = operator.itemgetter(0, 1)


def _overlap(index: int, start: datetime, end: datetime, what: str) -> dict[str, Any]:
    return {
        "index": index,
        "field": "start",
        "error": (
            f"overlaps {what} of this GPU ({_iso(start)} to {_iso(end)}): a GPU's intervals "
            "must not overlap"
        ),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
            _short_label(part.job_id),
            _short_label(part.user),
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


def _short_label(value: str | None) -> str:
    """A job id or user as stored: ``clean_label(value, LABEL_SHORT_MAX_CHARS) or ""``.

    Job ids are new with every job, so ``clean_label``'s cache misses on most shares (a miss,
    with its eviction, costs ~1 us, some 3 ms a batch of 2,400 shares). Printable ASCII without
    spaces is what agents send and what cleaning keeps as it is, so that is checked first.
    """
    if (
        value
        and len(value) <= LABEL_SHORT_MAX_CHARS
        and value.isascii()
        and value.isprintable()
        and " " not in value
    ):
        return value
    return clean_label(value, LABEL_SHORT_MAX_CHARS) or ""


def _touch_host(*, host: Host, version: str, now: datetime) -> None:
    stale = host.last_seen_at is None or now - host.last_seen_at > _TOUCH_EVERY
    if stale or host.agent_version != version:
        Host.objects.filter(pk=host.pk).update(last_seen_at=now, agent_version=version)


@dataclass(frozen=True)
class _Claimed:
    """A GPU this host listed that another, live host reports."""

    gpu_id: int
    owner: str
    reason: str


def _claimed_reason(gpu_uuid: str, owner: str, last_seen_at: datetime, window: timedelta) -> str:
    return (
        f"GPU {gpu_uuid} is reported by host '{owner}' (last listed {_iso(last_seen_at)}): a GPU"
        f" counts for one host, and two agents are sending this UUID. It moves to this host"
        f" only once '{owner}' has not listed it for {window.total_seconds() / 60:g} minutes."
    )


def _gpus_upsert(
    *, org: Organization, host: Host, inventory: list[GpuIn], now: datetime
) -> tuple[dict[str, tuple[int, float | None]], dict[str, _Claimed]]:
    """uuid -> (id, stored power limit) of the organization's GPUs this batch may name, after
    applying the batch's inventory; the power limit is the one stored before this batch. And
    the GPUs it listed that another live host holds (left as they are, not to be named).

    A GPU registered to another host moves to this one only if that host has not listed it for
    ``INGEST_GPU_CLAIM_WINDOW_MINUTES`` (the GPU was moved; its old server stopped reporting).
    While the other host still lists it, two agents send one UUID (two simulators with the
    same host name and seed, a cloned image): moving it on every batch would count each
    interval once for whichever host sent it first, and the other's as duplicates.

    Their rows stay locked (``FOR NO KEY UPDATE``) until the batch commits: a concurrent batch
    naming one of them waits, then sees this one's samples (each statement of a READ COMMITTED
    transaction reads what was committed when it started). The lock is taken in id order by
    one statement, after any new GPU is inserted, so that two batches never wait on each other
    in a cycle. ``NO KEY`` does not block the rollup's foreign keys to the GPU.
    """
    listed = {g.uuid: g for g in inventory}
    present = _gpus_present(org=org, uuids=list(listed)) if listed else set()
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
        if u not in present
    ]
    if new:
        Gpu.objects.bulk_create(new, ignore_conflicts=True)
    # A GPU listed by this host may be registered under another (moved between servers).
    known = {row[1]: row for row in _gpus_lock(org=org, host=host, uuids=list(listed))}
    stored = {u: (row[0], row[6]) for u, row in known.items()}
    window = timedelta(minutes=settings.INGEST_GPU_CLAIM_WINDOW_MINUTES)
    held = {
        u: known[u]
        for u in listed
        if known[u][2] != host.pk and known[u][-1] is not None and now - known[u][-1] < window
    }
    claimed: dict[str, _Claimed] = {}
    if held:
        owners = dict(
            Host.objects.filter(pk__in={row[2] for row in held.values()}).values_list(
                "pk", "hostname"
            )
        )
        for u, row in held.items():
            owner = owners[row[2]]
            claimed[u] = _Claimed(row[0], owner, _claimed_reason(u, owner, row[-1], window))
            del stored[u]
    for u, g in listed.items():
        if u in claimed:
            continue
        gpu_id, _, host_id, *attrs, last_seen_at = known[u]
        changes: dict[str, Any] = {}
        for attr, value_stored in zip(_GPU_ATTRS, attrs, strict=True):
            value = getattr(g, attr)
            if value is not None and value != value_stored:
                changes[attr] = value
        if host_id != host.pk:
            changes["host"] = host
            changes["last_seen_at"] = now  # this host's listing, not the old host's
            log.info(
                "ingest.gpu_moved org=%s gpu=%s host=%s old_host_id=%s old_last_seen=%s",
                org.slug,
                u,
                host.hostname,
                host_id,
                last_seen_at and _iso(last_seen_at),
            )
        if last_seen_at is None or now - last_seen_at > _TOUCH_EVERY:
            changes["last_seen_at"] = now
        if changes:
            Gpu.objects.filter(pk=gpu_id).update(**changes)
    return stored, claimed


# The GPU statements run on every batch: as SQL on PostgreSQL they cost ~0.3 ms of Python
# instead of ~2 ms for the two ORM querysets (compiling them, building model instances).
_GPU_ATTRS = ("index", "name", "memory_total_mib", "power_limit_w")
_PG_GPUS_PRESENT = "SELECT uuid FROM fleet_gpu WHERE organization_id = %s AND uuid = ANY(%s)"
_PG_GPUS_LOCK = """
SELECT id, uuid, host_id, index, name, memory_total_mib, power_limit_w, last_seen_at
FROM fleet_gpu WHERE organization_id = %s AND (host_id = %s OR uuid = ANY(%s))
ORDER BY id FOR NO KEY UPDATE
"""


def _gpus_present(*, org: Organization, uuids: list[str]) -> set[str]:
    """Those of ``uuids`` the organization has registered (no lock)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_PG_GPUS_PRESENT, [org.pk, uuids])
            return {row[0] for row in cursor.fetchall()}
    return set(Gpu.objects.for_org(org).filter(uuid__in=uuids).values_list("uuid", flat=True))


def _gpus_lock(*, org: Organization, host: Host, uuids: list[str]) -> list[tuple[Any, ...]]:
    """(id, uuid, host_id, index, name, memory_total_mib, power_limit_w, last_seen_at) of the
    host's GPUs and of the organization's GPUs in ``uuids``, locked in id order."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_PG_GPUS_LOCK, [org.pk, host.pk, uuids])
            return cursor.fetchall()
    return list(
        Gpu.objects.for_org(org)
        .filter(Q(host=host) | Q(uuid__in=uuids))
        .order_by("pk")
        .select_for_update(no_key=True)
        .values_list("pk", "uuid", "host_id", *_GPU_ATTRS, "last_seen_at")
    )


# How the labels of a batch map to ids: label as sent -> team or project id, None for none.
LabelIds = dict[str | None, int | None]


def _labels_resolve(
    *,
    org: Organization,
    rows: list[Row],
    indices: list[int],
    now: datetime,
    warnings: list[dict[str, Any]],
) -> tuple[LabelIds, LabelIds]:
    """Label as sent -> id for every team and project the samples name, registering new ones
    within the label budget; what was cleaned or refused is added to ``warnings``.

    Agents repeat a handful of labels over a thousand samples, so each distinct label is
    cleaned once; a label with nothing left after cleaning (and no label) maps to None.
    """
    # In order of first appearance: within the budget, the first labels are the ones kept.
    raw_teams = dict.fromkeys(part.team for _, _, sample in rows for part in sample.attribution)
    raw_projects = dict.fromkeys(
        part.project for _, _, sample in rows for part in sample.attribution
    )
    teams, refused_teams = _labels_ensure(Team, org=org, labels=raw_teams, now=now)
    projects, refused_projects = _labels_ensure(Project, org=org, labels=raw_projects, now=now)
    changed = {
        label
        for label in (*raw_teams, *raw_projects)
        if label is not None and _label_changed(label)
    }
    refused = {"team": refused_teams, "project": refused_projects}
    if changed or refused_teams or refused_projects:
        _label_warnings(rows=rows, indices=indices, changed=changed, refused=refused, out=warnings)
    if refused_teams or refused_projects:
        _label_budget_notice(org=org, now=now, refused=[*refused_teams, *refused_projects])
    return teams, projects


def _label_changed(label: str) -> bool:
    """Whether a label is stored or shown otherwise than it was sent (worth a warning)."""
    cleaned = clean_label(label)
    return cleaned != label or (cleaned is not None and label_display(cleaned) != cleaned)


def _label_change_warning(label: str) -> str:
    """What cleaning did to a label, and how its team or project is shown."""
    cleaned = clean_label(label)
    if cleaned is None:
        return "label has no visible characters; treated as absent"
    parts = []
    if cleaned != label:
        parts.append(
            f"label stored as {cleaned!r} (control characters and lone surrogates removed, "
            "whitespace runs made one space, at most 200 characters)"
        )
    shown = label_display(cleaned)
    if shown != cleaned:
        parts.append(f"label shown as {shown!r} (invisible characters kept, shown by code point)")
    return "; ".join(parts)


def _label_warnings(
    *,
    rows: list[Row],
    indices: list[int],
    changed: set[str],
    refused: dict[str, list[str]],
    out: list[dict[str, Any]],
) -> None:
    """One warning per distinct label, at its first use in the batch."""
    said: set[tuple[str, str]] = set()
    refused_sets = {kind: set(labels) for kind, labels in refused.items()}
    budget = (
        f"not registered: agents may register {settings.INGEST_MAX_NEW_LABELS_PER_BATCH} new "
        f"{{kind}}s per batch and {settings.INGEST_MAX_NEW_LABELS_PER_DAY} per organization per "
        "day; this share is stored unattributed"
    )
    more = 0
    for (_, _, sample), index in zip(rows, indices, strict=True):
        for i, part in enumerate(sample.attribution):
            for kind, label in (("team", part.team), ("project", part.project)):
                if label is None or (kind, label) in said:
                    continue
                if label in refused_sets[kind]:
                    warning = f"label {clean_label(label)!r} {budget.format(kind=kind)}"
                elif label in changed:
                    warning = _label_change_warning(label)
                else:
                    continue
                said.add((kind, label))
                if len(out) < MAX_WARNINGS:
                    out.append(
                        {"index": index, "field": f"attribution[{i}].{kind}", "warning": warning}
                    )
                else:
                    more += 1
    if more:
        out[-1] = {
            "index": out[-1]["index"],
            "field": "attribution",
            "warning": f"{more + 1} more labels were cleaned or not registered",
        }


def _labels_ensure(
    model: type[Team] | type[Project],
    *,
    org: Organization,
    labels: Iterable[str | None],
    now: datetime,
) -> tuple[LabelIds, list[str]]:
    """(label -> id, labels refused because the label budget is spent, in order)."""
    slugs: dict[str | None, str | None] = {}
    names: dict[str, str] = {}  # slug -> the name a new team or project gets, as shown
    for label in labels:
        cleaned = clean_label(label)
        slug = label_slug(cleaned) if cleaned is not None else None
        slugs[label] = slug
        if slug is not None and cleaned is not None:
            names.setdefault(slug, label_display(cleaned))
    ids = _slugs_ensure(model, org=org, names=names, now=now)
    mapping = {label: ids.get(slug) if slug is not None else None for label, slug in slugs.items()}
    refused = [
        label
        for label, slug in slugs.items()
        if label is not None and slug is not None and slug not in ids
    ]
    return mapping, refused


def _slugs_ensure(
    model: type[Team] | type[Project], *, org: Organization, names: dict[str, str], now: datetime
) -> dict[str, int]:
    """slug -> id for the slugs that exist or could be registered within the budget."""
    if not names:
        return {}
    found = dict(model.objects.for_org(org).filter(slug__in=names).values_list("slug", "id"))
    missing = [slug for slug in names if slug not in found]
    if missing:
        allowed = missing[: _label_budget(model, org=org, now=now)]
        model.objects.bulk_create(
            [
                model(organization=org, slug=s, name=names[s], auto_created=True, created_at=now)
                for s in allowed
            ],
            ignore_conflicts=True,
        )
        found.update(model.objects.for_org(org).filter(slug__in=allowed).values_list("slug", "id"))
    return found


def _label_budget(model: type[Team] | type[Project], *, org: Organization, now: datetime) -> int:
    """How many more teams (or projects) this batch may register for the organization.

    The organization's row is locked first, so that two batches cannot both spend the last of
    a day's budget; only batches that bring new labels take it, which is rare once an
    organization's labels are known.
    """
    list(Organization.objects.select_for_update(no_key=True).filter(pk=org.pk).values("pk"))
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = model.objects.for_org(org).filter(auto_created=True, created_at__gte=day_start).count()
    return max(
        0,
        min(
            settings.INGEST_MAX_NEW_LABELS_PER_BATCH, settings.INGEST_MAX_NEW_LABELS_PER_DAY - today
        ),
    )


def _label_budget_notice(*, org: Organization, now: datetime, refused: list[str]) -> None:
    """Count refused labels in the day's notice; the day's first refusal tells the admins."""
    day = now.astimezone(UTC).date()
    notice, created = LabelBudgetNotice.objects.get_or_create(
        organization=org,
        day=day,
        defaults={
            "refused": len(refused),
            "first_label": clean_label(refused[0]) or "",
            "created_at": now,
        },
    )
    if not created:
        LabelBudgetNotice.objects.filter(pk=notice.pk).update(refused=F("refused") + len(refused))
        if notice.notified_at is not None:
            return
        # The day's e-mail has not gone out (mail was failing): this refusal tries again.
    else:
        log.warning(
            "ingest.label_budget_exhausted org=%s day=%s refused=%d per_batch=%d per_day=%d",
            org.slug,
            day,
            len(refused),
            settings.INGEST_MAX_NEW_LABELS_PER_BATCH,
            settings.INGEST_MAX_NEW_LABELS_PER_DAY,
        )
    # A broker that is down is logged, not raised: the notice row is stored and the warning
    # logged, and the admin shows the notice either way.
    enqueue_on_commit("telemetry.label_budget_notify", notice.pk)


def label_budget_notify(*, notice_id: int) -> bool:
    """E-mail the organization's admins and owners about a day's refused labels, once."""
    notice = LabelBudgetNotice.objects.select_related("organization").filter(pk=notice_id).first()
    if notice is None:
        return False
    # Claimed with a conditional update: a retried or duplicated task sends nothing twice.
    claimed = LabelBudgetNotice.objects.filter(pk=notice.pk, notified_at__isnull=True).update(
        notified_at=timezone.now()
    )
    if not claimed:
        return False
    org = notice.organization
    recipients = sorted(
        {
            m.user.email
            for m in Membership.objects.for_org(org)
            .filter(role__in=[Role.ADMIN, Role.OWNER])
            .select_related("user")
            if m.user.email
        }
    )
    if not recipients:
        return False
    try:
        _label_budget_mail(notice=notice, org=org, recipients=recipients)
    except Exception:
        # Unclaim, so that a retry of the task (or the next refusal's) can still tell them.
        LabelBudgetNotice.objects.filter(pk=notice.pk).update(notified_at=None)
        raise
    log.info("ingest.label_budget_notified org=%s recipients=%d", org.slug, len(recipients))
    return True


def _label_budget_mail(
    *, notice: LabelBudgetNotice, org: Organization, recipients: list[str]
) -> None:
    send_mail(
        subject=f"[EcoReport] {org.name}: agents sent more new teams/projects than allowed",
        message=(
            f"On {notice.day:%Y-%m-%d} (UTC) agents of {org.name} sent labels for more new teams "
            f"or projects than the label budget allows "
            f"({settings.INGEST_MAX_NEW_LABELS_PER_BATCH} per batch, "
            f"{settings.INGEST_MAX_NEW_LABELS_PER_DAY} per day, each for teams and projects).\n"
            f"First label refused: {notice.first_label!r}.\n\n"
            "The energy of those shares was stored unattributed (nothing is lost). If the labels "
            "are genuine, create the teams or projects, or raise INGEST_MAX_NEW_LABELS_PER_DAY; "
            "if not, check the ECOREPORT_TEAM/ECOREPORT_PROJECT settings of your jobs.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )


def _samples_insert_sqlite(
    *, org: Organization, host: Host, rows: list[Row], now: datetime
) -> tuple[dict[tuple[int, datetime], int], list[tuple[int, datetime, datetime]]]:
    """Insert the samples that overlap nothing stored; returns ((gpu_id, start) -> id of those,
    [(position in rows, start, end of the stored interval)] of those that overlap one).

    SQLite: the transaction holds the database's write lock (IMMEDIATE), so "what is stored"
    and "insert the rest" cannot interleave with another writer.
    """
    gpu_ids = {gpu_id for gpu_id, _, _ in rows}
    # Stored intervals are at most MAX_INTERVAL_S long: none that starts earlier can overlap.
    earliest = min(start for _, start, _ in rows) - timedelta(seconds=MAX_INTERVAL_S)
    latest = max(sample.end for _, _, sample in rows)
    stored: dict[int, list[Interval]] = {}
    for gpu_id, start, end, energy_j in EnergySample.objects.filter(
        gpu_id__in=gpu_ids, start__gte=earliest, start__lt=latest
    ).values_list("gpu_id", "start", "end", "energy_j"):
        stored.setdefault(gpu_id, []).append((start, end, energy_j))
    starts = {gpu_id: [i[0] for i in intervals] for gpu_id, intervals in stored.items()}
    objs = []
    overlaps = []
    for position, (gpu_id, start, s) in enumerate(rows):
        conflict = (
            interval_conflict(
                stored[gpu_id], starts[gpu_id], start=start, end=s.end, energy_j=s.energy_j
            )
            if gpu_id in stored
            else None
        )
        if conflict is not None:
            if not conflict[0]:
                overlaps.append((position, conflict[1][0], conflict[1][1]))
            continue
        objs.append(
            EnergySample(
                organization=org,
                gpu_id=gpu_id,
                host=host,
                start=s.start,
                end=s.end,
                duration_s=(s.end - s.start).total_seconds(),
                energy_j=s.energy_j,
                method=s.method,
                split=s.split or "",
                gpu_util_pct=s.gpu_util_pct,
                mem_util_pct=s.mem_util_pct,
                mem_used_mib=s.mem_used_mib,
                power_max_w=s.power_max_w,
                temperature_c=s.temperature_c,
                received_at=now,
            )
        )
    created = EnergySample.objects.bulk_create(objs, batch_size=500)
    return {(o.gpu_id, o.start): o.pk for o in created}, overlaps


# One round trip for the whole batch. The samples arrive sorted by the natural key (see
# ``_ingest_locked``) and are inserted in that order (``ORDER BY i``). ``reach`` holds the GPUs
# whose latest stored interval ends after the batch's first start for them; for those only,
# ``met`` holds the samples that meet a stored interval of their GPU: the stored one with the
# greatest start before the sample's end (one backward probe of the (gpu_id, start) index), the
# only one that can overlap since a GPU's stored intervals are disjoint (see
# ``validation.interval_conflict``); an exact match is a duplicate, anything else an overlap. The batch holds its GPUs' row locks, so this
# statement's snapshot has every committed sample of them. ``ins`` holds only the samples this
# statement inserted (ON CONFLICT stays as a backstop), so duplicates get neither shares nor
# dirty hours; a data-modifying CTE sees the RETURNING rows of another, not the table, which is
# what we want.
# Column lists are positional in the JSON (arrays, not objects): smaller to encode and parse.
_PG_WRITE = """
WITH s AS (
    SELECT (r->>0)::int AS i, (r->>1)::bigint AS g, (r->>2)::timestamptz AS st,
           (r->>3)::timestamptz AS en, (r->>4)::float8 AS du, (r->>5)::float8 AS e,
           (r->>6) AS m, (r->>7)::float8 AS gu, (r->>8)::float8 AS mu, (r->>9)::float8 AS mm,
           (r->>10)::float8 AS pm, (r->>11)::float8 AS tc, coalesce(r->>12, '') AS sp
    FROM jsonb_array_elements(%(samples)s::jsonb) AS r
), reach AS MATERIALIZED (
    -- The GPUs whose latest stored sample ends after the batch's first start for that GPU.
    -- For the others (an agent appending, the usual case) nothing stored can overlap: one
    -- probe per GPU instead of one per sample. MATERIALIZED: inlined into ``met``, the
    -- planner ran this probe once per *sample* (1,000 index probes a batch instead of 8).
    SELECT f.g FROM (SELECT g, min(st) AS first FROM s GROUP BY g) f JOIN LATERAL (
        SELECT "end" FROM telemetry_energysample WHERE gpu_id = f.g ORDER BY start DESC LIMIT 1
    ) p ON p."end" > f.first
), met AS (
    SELECT s.i, p.start AS ps, p."end" AS pe,
           (p.start = s.st AND p."end" = s.en AND p.energy_j = s.e) AS dup
    FROM s JOIN reach ON reach.g = s.g JOIN LATERAL (
        SELECT start, "end", energy_j FROM telemetry_energysample
        WHERE gpu_id = s.g AND start < s.en ORDER BY start DESC LIMIT 1
    ) p ON p."end" > s.st
), ins AS (
    INSERT INTO telemetry_energysample
        (organization_id, gpu_id, host_id, start, "end", duration_s, energy_j, method,
         gpu_util_pct, mem_util_pct, mem_used_mib, power_max_w, temperature_c, split,
         received_at)
    SELECT %(org)s, g, %(host)s, st, en, du, e, m, gu, mu, mm, pm, tc, sp, %(now)s
    FROM s WHERE NOT EXISTS (SELECT FROM met WHERE met.i = s.i) ORDER BY i
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
SELECT (SELECT count(*) FROM ins), array(SELECT hour FROM hours),
       array(SELECT i FROM met WHERE NOT dup ORDER BY i),
       array(SELECT ps FROM met WHERE NOT dup ORDER BY i),
       array(SELECT pe FROM met WHERE NOT dup ORDER BY i)
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
) -> tuple[int, set[datetime], list[tuple[int, datetime, datetime]]]:
    """Insert the samples that overlap nothing stored, their shares and dirty hours; returns
    (accepted, hours, [(position in rows, start, end of the stored interval)] of overlaps)."""
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
                s.split,
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
    # same transaction, sends them as parameters instead (never as a prepared statement: the
    # connection's prepare_threshold is None, Django's default, which keeps PgBouncer's
    # transaction mode safe). Wrapped like Django's own cursors so that query logging and
    # execute_wrappers (tests count queries) still see it.
    raw = psycopg.Cursor(connection.connection)
    cursor = (
        connection.make_debug_cursor(raw)
        if connection.queries_logged
        else connection.make_cursor(raw)
    )
    with cursor:
        cursor.execute(_PG_WRITE, params)
        accepted, hours, positions, starts, ends = cursor.fetchone()
    return accepted, set(hours), list(zip(positions, starts, ends, strict=True))
