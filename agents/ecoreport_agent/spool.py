"""The local spool: SQLite in WAL mode, written before anything is uploaded.

Tables:
- ``samples``: booked intervals not yet acknowledged, each with the JSON sent for it and, for
  counter samples, the counter readings it spans (an audit chain: one sample's end reading is the
  next one's start reading).
- ``batches``: batch ids handed out *before* a batch is sent, so a retry reuses the id and the
  backend answers it from its idempotency record instead of counting it again.
- ``readings``: the last counter reading per GPU, with the boot id and clocks it was taken with,
  written in the same transaction as the sample that ends at it. After a crash the agent resumes
  from exactly what was booked: nothing twice, nothing lost.
- ``totals``: energy booked per GPU since the spool was created (``status`` shows it; tests
  compare it with the backend's totals).
- ``dead_letter``: what the backend refused, with its reason.
- ``meta``: last upload, last error, counters for ``status``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ecoreport_agent.attribution import LABEL_KEYS, attribution_entries
from ecoreport_agent.clock import iso_utc

log = logging.getLogger("ecoreport_agent.spool")

MAX_INTERVAL_S = 3600.0  # the backend rejects longer samples
HOUR_S = 3600.0  # hourly carbon factors and PUE periods start on UTC hours
# Bytes a spooled sample costs beyond its JSON (row header, columns, index entry), measured
# roughly on SQLite 3.40; the size bound only needs to be right to a few percent.
ROW_OVERHEAD_BYTES = 120
SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    gpu_uuid TEXT NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    energy_j REAL NOT NULL,
    method TEXT NOT NULL,
    counter_start_mj INTEGER,
    counter_end_mj INTEGER,
    payload TEXT NOT NULL,
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS samples_batch_start ON samples (batch_id, start_s);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    created_s REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS gpus (uuid TEXT PRIMARY KEY, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    gpu_uuid TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    counter_mj INTEGER,
    mono_s REAL NOT NULL,
    wall_s REAL NOT NULL,
    boot_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS totals (
    gpu_uuid TEXT PRIMARY KEY,
    energy_j REAL NOT NULL,
    samples INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    gpu_uuid TEXT,
    start_s REAL,
    energy_j REAL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


@dataclass
class SpoolSample:
    gpu_uuid: str
    start_s: float
    end_s: float
    energy_j: float
    method: str
    payload: dict[str, Any]
    counter_start_mj: int | None = None
    counter_end_mj: int | None = None


@dataclass
class Reading:
    gpu_uuid: str
    method: str
    counter_mj: int | None
    mono_s: float
    wall_s: float  # end of the last booked interval (or the baseline), on the sample timeline
    boot_id: str


@dataclass
class Batch:
    batch_id: str
    sample_ids: list[int]
    payloads: list[str]
    gpu_uuids: list[str]
    attempts: int


def default_spool_path() -> str:
    """/var/lib/ecoreport when we may write there (root, or the systemd StateDirectory)."""
    system_dir = "/var/lib/ecoreport"
    if os.access(system_dir, os.W_OK) or (os.geteuid() == 0 and os.access("/var/lib", os.W_OK)):
        return os.path.join(system_dir, "spool.db")
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(state, "ecoreport", "spool.db")


class Spool:
    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o750, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so every multi-statement write is
        # one explicit transaction.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a transaction is atomic and survives a process crash (kill -9);
        # only an OS crash may lose the last commits, and then sample and reading go together.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        # Spooled size is tracked in memory (one scan at start): the file's page count keeps its
        # high-water mark after deletes, so it cannot tell whether compaction helped.
        count, payload = self.db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM samples"
        ).fetchone()
        self.content_bytes = int(payload + count * ROW_OVERHEAD_BYTES)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- meta -------------------------------------------------------------------------------

    def meta_get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def meta_set(self, **values: Any) -> None:
        with self._tx() as db:
            for key, value in values.items():
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (key, None if value is None else str(value)),
                )

    # -- inventory and readings ----------------------------------------------------------

    def upsert_gpus(self, gpus: Sequence[dict[str, Any]]) -> None:
        with self._tx() as db:
            for gpu in gpus:
                db.execute(
                    "INSERT OR REPLACE INTO gpus (uuid, payload) VALUES (?, ?)",
                    (gpu["uuid"], json.dumps(gpu, separators=(",", ":"))),
                )

    def reading(self, gpu_uuid: str) -> Reading | None:
        row = self.db.execute(
            "SELECT gpu_uuid, method, counter_mj, mono_s, wall_s, boot_id FROM readings"
            " WHERE gpu_uuid = ?",
            (gpu_uuid,),
        ).fetchone()
        return Reading(*row) if row else None

    # -- booking ----------------------------------------------------------------------------

    def book(self, samples: Sequence[SpoolSample], readings: Sequence[Reading] = ()) -> None:
        """Spool samples and move the counter baselines past them, in ONE transaction.

        If the process dies before COMMIT neither is stored and the restart books the same energy
        from the old reading; after COMMIT both are, and the restart starts from the new one.
        """
        with self._tx() as db:
            self._insert_samples(db, samples)
            for r in readings:
                db.execute(
                    "INSERT OR REPLACE INTO readings"
                    " (gpu_uuid, method, counter_mj, mono_s, wall_s, boot_id)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (r.gpu_uuid, r.method, r.counter_mj, r.mono_s, r.wall_s, r.boot_id),
                )

    def _insert_samples(
        self, db: sqlite3.Connection, samples: Sequence[SpoolSample], count_totals: bool = True
    ) -> None:
        per_gpu: dict[str, list[float]] = {}
        for s in samples:
            text = json.dumps(s.payload, separators=(",", ":"))
            self.content_bytes += len(text) + ROW_OVERHEAD_BYTES
            db.execute(
                "INSERT INTO samples (gpu_uuid, start_s, end_s, energy_j, method,"
                " counter_start_mj, counter_end_mj, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    s.gpu_uuid,
                    s.start_s,
                    s.end_s,
                    s.energy_j,
                    s.method,
                    s.counter_start_mj,
                    s.counter_end_mj,
                    text,
                ),
            )
            acc = per_gpu.setdefault(s.gpu_uuid, [0.0, 0])
            acc[0] += s.energy_j
            acc[1] += 1
        if not count_totals:
            return
        for gpu_uuid, (energy_j, count) in per_gpu.items():
            cur = db.execute(
                "UPDATE totals SET energy_j = energy_j + ?, samples = samples + ?"
                " WHERE gpu_uuid = ?",
                (energy_j, count, gpu_uuid),
            )
            if cur.rowcount == 0:
                db.execute(
                    "INSERT INTO totals (gpu_uuid, energy_j, samples) VALUES (?, ?, ?)",
                    (gpu_uuid, energy_j, count),
                )

    # -- batches ----------------------------------------------------------------------------

    def next_batch(self, max_samples: int, skip: Sequence[str] = ()) -> Batch | None:
        """The batch to send: an unacknowledged one first (same id), else a new one.

        The id is committed before the request goes out; if the answer is lost the retry carries
        the same id and the backend replies with its original answer. Batches in ``skip`` (ones
        the uploader suspects are poison) are passed over, not dropped.
        """
        with self._tx() as db:
            # Only "?" placeholders are formatted into the statement, never a value.
            where = f" WHERE batch_id NOT IN ({','.join('?' * len(skip))})" if skip else ""
            sql = f"SELECT batch_id, attempts FROM batches{where} ORDER BY created_s, rowid LIMIT 1"  # noqa: S608
            row = db.execute(sql, tuple(skip)).fetchone()
            if row is None:
                batch_id = str(uuid.uuid4())
                cur = db.execute(
                    "UPDATE samples SET batch_id = ? WHERE id IN (SELECT id FROM samples"
                    " WHERE batch_id IS NULL ORDER BY start_s, id LIMIT ?)",
                    (batch_id, max_samples),
                )
                if cur.rowcount == 0:
                    return None
                db.execute(
                    "INSERT INTO batches (batch_id, created_s) VALUES (?, ?)",
                    (batch_id, time.time()),
                )
                attempts = 0
            else:
                batch_id, attempts = row
            db.execute("UPDATE batches SET attempts = attempts + 1 WHERE batch_id = ?", (batch_id,))
            rows = db.execute(
                "SELECT id, payload, gpu_uuid FROM samples WHERE batch_id = ? ORDER BY start_s, id",
                (batch_id,),
            ).fetchall()
        if not rows:  # every sample of it dead-lettered or merged away: drop the empty batch
            with self._tx() as db:
                db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
            return self.next_batch(max_samples, skip)
        return Batch(
            batch_id=batch_id,
            sample_ids=[r[0] for r in rows],
            payloads=[r[1] for r in rows],
            gpu_uuids=sorted({r[2] for r in rows}),
            attempts=attempts + 1,
        )

    def inventory(self, gpu_uuids: Sequence[str]) -> list[str]:
        """Inventory JSON objects for the GPUs a batch mentions."""
        out = []
        for gpu_uuid in gpu_uuids:
            row = self.db.execute("SELECT payload FROM gpus WHERE uuid = ?", (gpu_uuid,)).fetchone()
            if row:
                out.append(row[0])
        return out

    def ack_batch(self, batch: Batch, rejected: dict[int, str]) -> None:
        """The backend stored (or already had) the batch; ``rejected`` maps index -> reason."""
        now = time.time()
        with self._tx() as db:
            for index, reason in rejected.items():
                if 0 <= index < len(batch.sample_ids):
                    self._to_dead_letter(db, batch.sample_ids[index], reason, now)
            db.execute("DELETE FROM samples WHERE batch_id = ?", (batch.batch_id,))
            db.execute("DELETE FROM batches WHERE batch_id = ?", (batch.batch_id,))
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_upload_s', ?)", (str(now),)
            )
        self.content_bytes -= _batch_bytes(batch)

    def dead_letter_batch(self, batch: Batch, reason: str) -> None:
        now = time.time()
        with self._tx() as db:
            for sample_id in batch.sample_ids:
                self._to_dead_letter(db, sample_id, reason, now)
            db.execute("DELETE FROM batches WHERE batch_id = ?", (batch.batch_id,))
        self.content_bytes -= _batch_bytes(batch)

    def _to_dead_letter(
        self, db: sqlite3.Connection, sample_id: int, reason: str, now: float
    ) -> None:
        db.execute(
            "INSERT INTO dead_letter (gpu_uuid, start_s, energy_j, payload, reason, created_s)"
            " SELECT gpu_uuid, start_s, energy_j, payload, ?, ? FROM samples WHERE id = ?",
            (reason, now, sample_id),
        )
        db.execute("DELETE FROM samples WHERE id = ?", (sample_id,))

    def split_batch(self, batch: Batch) -> None:
        """413: give the samples back to the pool; the next batches are smaller, with new ids.

        Reusing the id for different content would be wrong if the backend had recorded it; a
        413 means it stored nothing, so fresh ids are safe.
        """
        with self._tx() as db:
            db.execute("UPDATE samples SET batch_id = NULL WHERE batch_id = ?", (batch.batch_id,))
            db.execute("DELETE FROM batches WHERE batch_id = ?", (batch.batch_id,))

    # -- size and compaction ----------------------------------------------------------------

    def used_bytes(self) -> int:
        """What the unsent samples take (estimate), the quantity the size bound applies to."""
        return self.content_bytes

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM samples").fetchone()[0])

    def compact(self, fraction: float = 0.5) -> tuple[int, int]:
        """Merge the oldest unsent samples of each GPU into intervals of up to an hour.

        Only samples never handed to a batch are touched (a batch id already sent must keep its
        content). Energy is summed exactly, so the GPU's total is unchanged; means are weighted
        by duration, peaks (power, memory) kept as maxima; attribution shares become
        energy-weighted averages, so the energy attributed to each label is unchanged too. Only
        contiguous samples of the same method and split are merged: the merged interval claims no
        time that was not measured, and says truly how its energy was divided. Idle samples (no attribution: the backend books them as idle) merge only
        with idle ones, never with attributed ones, where their energy would become a non-idle
        unattributed remainder. A merged interval stays inside one UTC hour, so hourly factors and
        PUE apply to it as they would to its parts (a sample that already crosses an hour is left
        alone). Returns (rows before, rows after) among those considered.
        """
        with self._tx() as db:
            unsent = db.execute("SELECT count(*) FROM samples WHERE batch_id IS NULL").fetchone()[0]
            limit = max(2, int(unsent * fraction))
            rows = db.execute(
                "SELECT id, gpu_uuid, start_s, end_s, energy_j, method, counter_start_mj,"
                " counter_end_mj, payload FROM samples WHERE batch_id IS NULL"
                " ORDER BY start_s, id LIMIT ?",
                (limit,),
            ).fetchall()
            by_gpu: dict[str, list[tuple[Any, ...]]] = {}
            for row in rows:
                by_gpu.setdefault(row[1], []).append(row)
            after = 0
            for gpu_rows in by_gpu.values():
                gpu_rows.sort(key=lambda r: r[2])
                run: list[tuple[Any, ...]] = []
                run_idle = False
                run_split = None
                for row in gpu_rows:
                    payload = json.loads(row[8])
                    idle = not payload.get("attribution")
                    split = payload.get("split")
                    if run and (
                        row[5] != run[0][5]
                        or abs(row[2] - run[-1][3]) > 0.0005
                        or idle != run_idle
                        or split != run_split
                        or row[3] > _hour_end(run[0][2]) + 0.0005
                    ):
                        after += self._merge_run(db, run)
                        run = []
                    if not run:
                        run_idle, run_split = idle, split
                    run.append(row)
                if run:
                    after += self._merge_run(db, run)
        return len(rows), after

    def _merge_run(self, db: sqlite3.Connection, run: list[tuple[Any, ...]]) -> int:
        if len(run) < 2:
            return len(run)
        payloads = [json.loads(r[8]) for r in run]
        merged = merge_payloads(payloads)
        text = json.dumps(merged, separators=(",", ":"))
        self.content_bytes += len(text) - sum(len(r[8]) for r in run)
        self.content_bytes -= (len(run) - 1) * ROW_OVERHEAD_BYTES
        counter_start = run[0][6]
        counter_end = run[-1][7]
        energy_j = merged["energy_j"]
        ids = [r[0] for r in run]
        db.execute(
            f"DELETE FROM samples WHERE id IN ({','.join('?' * len(ids))})",  # noqa: S608 - placeholders only
            ids,
        )
        db.execute(
            "INSERT INTO samples (id, gpu_uuid, start_s, end_s, energy_j, method,"
            " counter_start_mj, counter_end_mj, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ids[0],
                run[0][1],
                run[0][2],
                run[-1][3],
                energy_j,
                run[0][5],
                counter_start,
                counter_end,
                text,
            ),
        )
        return 1

    # -- status -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        db = self.db
        pending, oldest, pending_j = db.execute(
            "SELECT count(*), min(start_s), coalesce(sum(energy_j), 0) FROM samples"
        ).fetchone()
        batches = db.execute("SELECT count(*) FROM batches").fetchone()[0]
        dead, dead_j = db.execute(
            "SELECT count(*), coalesce(sum(energy_j), 0) FROM dead_letter"
        ).fetchone()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        gpus = []
        pending_by_gpu = dict(
            db.execute("SELECT gpu_uuid, sum(energy_j) FROM samples GROUP BY gpu_uuid").fetchall()
        )
        dead_by_gpu = dict(
            db.execute(
                "SELECT gpu_uuid, sum(energy_j) FROM dead_letter GROUP BY gpu_uuid"
            ).fetchall()
        )
        methods = dict(db.execute("SELECT gpu_uuid, method FROM readings").fetchall())
        for gpu_uuid, energy_j, count in db.execute(
            "SELECT gpu_uuid, energy_j, samples FROM totals ORDER BY gpu_uuid"
        ):
            gpus.append(
                {
                    "uuid": gpu_uuid,
                    "method": methods.get(gpu_uuid),
                    "energy_j": round(energy_j, 3),
                    "samples": count,
                    "pending_energy_j": round(pending_by_gpu.get(gpu_uuid) or 0.0, 3),
                    "dead_letter_energy_j": round(dead_by_gpu.get(gpu_uuid) or 0.0, 3),
                }
            )

        def when(key: str) -> str | None:
            value = meta.get(key)
            return iso_utc(float(value)) if value else None

        return {
            "spool": self.path,
            "pending_samples": pending,
            "pending_batches": batches,
            "pending_energy_j": round(pending_j, 3),
            "oldest_unsent": iso_utc(oldest) if oldest is not None else None,
            "last_upload": when("last_upload_s"),
            "last_error": meta.get("last_error"),
            "last_error_at": when("last_error_s"),
            "dead_letter": dead,
            "dead_letter_energy_j": round(dead_j, 3),
            "spool_bytes": self.used_bytes(),
            "gpus": gpus,
            "agent": {
                "pid": int(meta["pid"]) if meta.get("pid") else None,
                "started": when("started_s"),
                "stopped": when("stopped_s"),
                "nvml_calls_per_interval": json.loads(meta.get("nvml_calls_per_interval", "{}")),
                "cycles": int(meta.get("cycles") or 0),
            },
        }


def _hour_end(epoch_s: float) -> float:
    """The first UTC hour boundary after ``epoch_s``."""
    return (math.floor(epoch_s / HOUR_S) + 1) * HOUR_S


def _weighted_mean(values: list[tuple[Any, float]]) -> float | None:
    known = [(v, w) for v, w in values if v is not None]
    weight = sum(w for _, w in known)
    if not known or weight <= 0:
        return None
    return sum(v * w for v, w in known) / weight


def merge_payloads(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """One sample covering several contiguous ones of the same GPU (see :meth:`Spool.compact`)."""
    from ecoreport_agent.clock import parse_iso_utc

    durations = [parse_iso_utc(p["end"]) - parse_iso_utc(p["start"]) for p in payloads]
    # Integer millijoules: the merged energy is the exact sum of what was measured.
    energy_mj = sum(round(p["energy_j"] * 1000) for p in payloads)
    energy_j = energy_mj / 1000
    shares: dict[tuple[Any, ...], float] = {}
    weights = [p["energy_j"] for p in payloads]
    if sum(weights) <= 0:
        weights = durations
    total_weight = sum(weights)
    for payload, weight in zip(payloads, weights):
        for entry in payload.get("attribution") or []:
            key = tuple(entry.get(k) for k in LABEL_KEYS)
            shares[key] = shares.get(key, 0.0) + entry["share"] * weight / total_weight

    def mean(field: str, digits: int) -> float | None:
        value = _weighted_mean([(p.get(field), d) for p, d in zip(payloads, durations)])
        return None if value is None else round(value, digits)

    peaks = [p["power_max_w"] for p in payloads if p.get("power_max_w") is not None]
    # Memory in use is read for its peak (will the job fit a smaller GPU?): the merged sample
    # keeps the largest of its parts, as a mean would hide the peak.
    memory = [p["mem_used_mib"] for p in payloads if p.get("mem_used_mib") is not None]
    temperature = mean("temperature_c", 1)
    merged: dict[str, Any] = {
        "gpu_uuid": payloads[0]["gpu_uuid"],
        "start": payloads[0]["start"],
        "end": payloads[-1]["end"],
        "energy_j": energy_j,
        "method": payloads[0]["method"],
        "gpu_util_pct": mean("gpu_util_pct", 2),
        "mem_util_pct": mean("mem_util_pct", 2),
        "mem_used_mib": max(memory) if memory else None,
        "power_max_w": max(peaks) if peaks else None,
        "temperature_c": temperature,
        "attribution": attribution_entries(shares),
    }
    if payloads[0].get("split") is not None:  # the same in all of them (see Spool.compact)
        merged["split"] = payloads[0]["split"]
    return merged


def _batch_bytes(batch: Batch) -> int:
    return sum(len(p) for p in batch.payloads) + len(batch.payloads) * ROW_OVERHEAD_BYTES
