"""Who used a GPU: process labels from /proc and the energy shares sent with each sample."""

from __future__ import annotations

import math
import os
import pwd
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Protocol

LABEL_VARIABLES = (
    "ECOREPORT_PROJECT",
    "ECOREPORT_TEAM",
    "ECOREPORT_JOB_ID",
    "SLURM_JOB_ID",
    "SLURM_JOB_ACCOUNT",
    "SLURM_JOB_USER",
)
LABEL_KEYS = ("project", "team", "user", "job_id")
# Shares travel with six decimals: fine enough (a millionth of a sample's energy) and coarse
# enough that rounding down can be done exactly in integers.
SHARE_UNITS = 1_000_000

# (project, team, user, job_id), each None when unknown. Optional, not "str | None": this alias
# is evaluated at runtime, and Python 3.9 has no "|" between types.
Labels = tuple[Optional[str], Optional[str], Optional[str], Optional[str]]


# What the backend stores: team and project names of 200 characters, users and job ids of 128.
LABEL_MAX_CHARS = 200
LABEL_SHORT_MAX_CHARS = 128
_SPACES = re.compile(r"\s+")
# Controls (NUL, escape sequences) and lone surrogates: nothing the backend can store. Invisible
# characters (zero-width space) are kept, they tell labels apart; a label of nothing but them
# (Unicode's Default_Ignorable_Code_Point) is no label. Same tables as the backend's
# (ecoreport.telemetry.validation), both fixed whatever the Python's Unicode version.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs"})
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def _is_clean_ascii(value: str) -> bool:
    """Printable ASCII, single spaces between words, none at the ends: already clean."""
    return (
        value.isascii()
        and value.isprintable()
        and value[:1] != " "
        and value[-1:] != " "
        and "  " not in value
        and value != ""
    )


def clean_label(value: str | None, max_chars: int = LABEL_MAX_CHARS) -> str | None:
    """A label as the backend stores it: NFC, without control or lone surrogate characters,
    whitespace runs as one space, at most ``max_chars`` characters; None if nothing visible is
    left. The backend applies the same rules (``ecoreport.telemetry.validation``); cleaning
    here keeps the spool and the uploads small (a label with invisible characters is still
    answered with a warning: how the backend shows it)."""
    if value is None:
        return None
    if len(value) <= max_chars and _is_clean_ascii(value):
        return value
    text = _SPACES.sub(" ", value)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
    text = text[:max_chars].rstrip()
    return text if _IGNORABLE.sub("", text).strip() else None


def labels_from_environment(env: Mapping[str, str], unix_user: str | None) -> Labels:
    """Map a process environment to (project, team, user, job_id), each cleaned.

    Explicit EcoReport labels win over what Slurm says; Slurm's account is the usual team. A
    variable with nothing visible in it counts as unset.
    """

    def get(name: str, max_chars: int = LABEL_MAX_CHARS) -> str | None:
        return clean_label(env.get(name), max_chars)

    team = get("ECOREPORT_TEAM") or get("SLURM_JOB_ACCOUNT")
    project = get("ECOREPORT_PROJECT")
    job_id = get("ECOREPORT_JOB_ID", LABEL_SHORT_MAX_CHARS)
    slurm_job = get("SLURM_JOB_ID", LABEL_SHORT_MAX_CHARS - len("slurm-"))
    if not job_id and slurm_job:
        job_id = "slurm-" + slurm_job
    user = get("SLURM_JOB_USER", LABEL_SHORT_MAX_CHARS) or clean_label(
        unix_user, LABEL_SHORT_MAX_CHARS
    )
    return (project, team, user, job_id)


class LabelSource(Protocol):
    def labels(self, pid: int) -> Labels: ...

    def forget_except(self, live_pids: Iterable[int]) -> None: ...


class ProcLabelSource:
    """Reads /proc/<pid>/environ and the owner of /proc/<pid>.

    Reading another user's environ needs CAP_SYS_PTRACE (the systemd unit grants it); without it
    the owner is still known and the labels are left empty. Results are cached per
    (pid, start time) so a recycled pid is never given a dead process's labels.
    """

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._cache: dict[int, tuple[int, Labels]] = {}
        self.reads = 0  # environ reads, for tests and the benchmark

    def _start_time(self, pid: int) -> int | None:
        try:
            with open(f"{self.proc_root}/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            return None
        # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        try:
            return int(fields[19])  # field 22: starttime, in clock ticks since boot
        except (IndexError, ValueError):
            return None

    def labels(self, pid: int) -> Labels:
        start = self._start_time(pid)
        cached = self._cache.get(pid)
        if cached is not None and start is not None and cached[0] == start:
            return cached[1]
        labels = self._read(pid)
        if start is not None:
            self._cache[pid] = (start, labels)
        return labels

    def _read(self, pid: int) -> Labels:
        self.reads += 1
        env: dict[str, str] = {}
        try:
            with open(f"{self.proc_root}/{pid}/environ", "rb") as fh:
                raw = fh.read()
            for item in raw.split(b"\0"):
                key, sep, value = item.partition(b"=")
                if sep and key.decode("utf-8", "replace") in LABEL_VARIABLES:
                    env[key.decode()] = value.decode("utf-8", "replace")
        except OSError:
            pass  # gone, or not ours to read: the owner below is still worth sending
        user: str | None = None
        try:
            uid = os.stat(f"{self.proc_root}/{pid}").st_uid
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = f"uid-{uid}"  # a container user unknown to this host's passwd
        except OSError:
            pass
        return labels_from_environment(env, user)

    def forget_except(self, live_pids: Iterable[int]) -> None:
        live = set(live_pids)
        for pid in [p for p in self._cache if p not in live]:
            del self._cache[pid]


def tick_contributions(
    pids: Sequence[int], weights: Mapping[int, float] | None, fixed: Mapping[int, float] | None
) -> dict[int, float]:
    """How one polling tick's energy divides among the processes seen at that tick.

    ``fixed`` (MIG) gives each process its instance's fraction of the GPU directly. Otherwise the
    tick is split by per-process utilization ``weights`` when the GPU reports any for these
    processes, and evenly when it does not.
    """
    if not pids:
        return {}
    if fixed is not None:
        return {pid: fixed.get(pid, 0.0) for pid in pids}
    if weights:
        total = sum(weights.get(pid, 0.0) for pid in pids)
        if total > 0:
            return {pid: weights.get(pid, 0.0) / total for pid in pids}
    even = 1.0 / len(pids)
    return {pid: even for pid in pids}


def round_shares(shares: Mapping[Labels, float]) -> list[tuple[Labels, float]]:
    """Shares rounded *down* to 1e-6, dropping zeros, with a float sum that never exceeds 1.

    Rounding down in integer units keeps the exact sum <= 1; the final loop guards against the
    float addition of those decimals landing one ulp above 1.0, which a strict backend rejects.
    """
    units = {key: math.floor(value * SHARE_UNITS + 1e-9) for key, value in shares.items()}
    units = {key: min(u, SHARE_UNITS) for key, u in units.items() if u > 0}
    while sum(units.values()) > SHARE_UNITS:
        biggest = max(units, key=lambda k: units[k])
        units[biggest] -= 1
    result = sorted(
        ((key, u / SHARE_UNITS) for key, u in units.items() if u > 0),
        key=lambda item: (-item[1], tuple(v or "" for v in item[0])),
    )
    while result and (sum(v for _, v in result) > 1.0 or math.fsum(v for _, v in result) > 1.0):
        key, value = result[0]
        result[0] = (key, (round(value * SHARE_UNITS) - 1) / SHARE_UNITS)
    return [(key, value) for key, value in result if value > 0]


def attribution_entries(shares: Mapping[Labels, float]) -> list[dict[str, Any]]:
    """The ``attribution`` list of a sample: every key present, ``None`` where unknown."""
    entries = []
    for labels, share in round_shares(shares):
        entry: dict[str, Any] = {"share": share}
        entry.update(zip(LABEL_KEYS, labels))
        entries.append(entry)
    return entries
