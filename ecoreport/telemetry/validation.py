"""Per-sample plausibility rules. Pure functions: no database, tested on their own."""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import unicodedata
from datetime import datetime, timedelta
from functools import lru_cache

from ecoreport.telemetry.schema import SampleIn

MAX_INTERVAL_S = 3600.0
FUTURE_TOLERANCE = timedelta(minutes=5)
# Float noise from summing shares computed on the agent (0.1 + 0.2 + 0.7 > 1).
SHARE_SUM_TOLERANCE = 1e-9

_LABEL_BAD_CHARS = re.compile(r"[^a-z0-9._-]+")
# A label that keeps its old slug: ASCII letters and digits, '.', '_', '-' and spaces, which map
# to the slug by lower-casing and '-' for spaces, as before labels could be any text. Anything
# else (accents, other scripts, punctuation) gets a slug with a digest of the label, so two
# labels that differ by more than case or spacing never share a team or project.
_LABEL_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")
_LABEL_SPACES = re.compile(r"\s+")
# Removed from a label: controls (NUL, escape sequences; tabs and newlines become spaces first)
# and lone surrogates (not encodable in UTF-8, so not storable). Both sets are fixed by Unicode,
# so the agent and the backend remove the same characters whatever their Python's Unicode
# version. Everything else is kept: it is part of the label's identity.
_LABEL_DROPPED_CATEGORIES = frozenset({"Cc", "Cs"})
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): what renders as nothing
# (zero-width space and joiners, bidi controls, soft hyphen, variation selectors, Hangul fillers,
# tags). Kept, so "nlp" + U+200B is not "nlp", but a label of nothing else is no label. The
# property reserves ranges for future ignorables, so it does not move between Unicode versions;
# the agent has the same table (ecoreport_agent.attribution).
_LABEL_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# Shown by code point on pages, beside the ignorables: other format characters, private-use and
# unassigned code points (a box or nothing, alike for all of them), the blank braille pattern,
# and the opening bracket of the notation itself, so that no label looks like another one.
_LABEL_SHOWN_AS_CODE_CATEGORIES = frozenset({"Cf", "Co", "Cn"})
_LABEL_SHOWN_AS_CODE = frozenset({"\u2800", "\u27e8"})
# Team and project names are stored in 200 characters; job ids and users in 128.
LABEL_MAX_CHARS = 200
LABEL_SHORT_MAX_CHARS = 128
SLUG_MAX_CHARS = 64
_DIGEST_CHARS = 10


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


@lru_cache(maxsize=8192)  # agents repeat the same few labels on every sample
def clean_label(value: str | None, max_chars: int = LABEL_MAX_CHARS) -> str | None:
    """A label as it is stored and identified: NFC, without control or lone surrogate
    characters, runs of whitespace as one space, trimmed, at most ``max_chars`` characters.

    Invisible characters (zero-width space, bidi controls) are kept: "nlp" + U+200B is another
    label than "nlp", shown as ``nlp⟨U+200B⟩`` (``label_display``). None when nothing visible is
    left: a label of only invisible characters is no label. The agent applies the same rules
    before sending (``ecoreport_agent.attribution.clean_label``).
    """
    if value is None:
        return None
    if len(value) <= max_chars and _is_clean_ascii(value):
        return value  # the usual label: nothing to clean (job ids miss the cache every time)
    # Whitespace first, so a tab or newline separates words instead of vanishing.
    text = _LABEL_SPACES.sub(" ", value)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _LABEL_DROPPED_CATEGORIES)
    text = _LABEL_SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
    text = text[:max_chars].rstrip()
    return text if _LABEL_IGNORABLE.sub("", text).strip() else None


def _shown_as_code(ch: str) -> bool:
    return (
        ch in _LABEL_SHOWN_AS_CODE
        or unicodedata.category(ch) in _LABEL_SHOWN_AS_CODE_CATEGORIES
        or _LABEL_IGNORABLE.match(ch) is not None
    )


@lru_cache(maxsize=8192)
def label_display(label: str) -> str:
    """How a team or project registered from ``label`` (a ``clean_label``) is named on pages,
    reports and in the API: the label, with each character that shows as nothing (or as the
    same box as others) written as its code point, ``nlp⟨U+200B⟩``, so that two labels never
    look alike. At most ``LABEL_MAX_CHARS`` characters (the name column), cut with "…"."""
    if label.isascii():
        return label  # a clean label's ASCII characters are all visible
    pieces = [f"\u27e8U+{ord(ch):04X}\u27e9" if _shown_as_code(ch) else ch for ch in label]
    if sum(map(len, pieces)) <= LABEL_MAX_CHARS:
        return "".join(pieces)
    kept, length = [], 0
    for piece in pieces:  # whole code points only, and room for the ellipsis
        if length + len(piece) > LABEL_MAX_CHARS - 1:
            break
        kept.append(piece)
        length += len(piece)
    return "".join(kept) + "\u2026"


@lru_cache(maxsize=8192)
def label_slug(label: str) -> str:
    """The slug of a team or project named ``label`` (a ``clean_label``), unique per label.

    Plain labels keep their readable slug (``NLP Research`` -> ``nlp-research``): labels that
    differ only in case or spacing name the same team, as they always did. Others get the ASCII
    letters that survive transliteration plus a digest of the case-folded label
    (``Équipe`` -> ``equipe-1c0f…``, ``研究チーム`` -> ``5d3a…``), so they are neither dropped
    nor merged with one another.
    """
    if _LABEL_PLAIN.fullmatch(label):
        slug = _LABEL_BAD_CHARS.sub("-", label.lower()).strip("-._")
        if slug and len(slug) <= SLUG_MAX_CHARS:
            return slug
    digest = hashlib.sha256(unicodedata.normalize("NFC", label.casefold()).encode()).hexdigest()
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode().lower()
    base = _LABEL_BAD_CHARS.sub("-", ascii_text).strip("-._")
    base = base[: SLUG_MAX_CHARS - _DIGEST_CHARS - 1].rstrip("-._")
    return f"{base}-{digest[:_DIGEST_CHARS]}" if base else digest[:_DIGEST_CHARS]


def normalize_label(value: str | None) -> str | None:
    """The slug a free-form job label (``ECOREPORT_TEAM="NLP Research"``) is registered under,
    or None for no label (absent, or nothing visible in it)."""
    label = clean_label(value)
    return label_slug(label) if label is not None else None


def sample_problem(
    sample: SampleIn,
    *,
    max_power_w: float,
    now: datetime,
    oldest: datetime,
) -> tuple[str, str] | None:
    """The first reason ``sample`` is implausible, as (field, message), or None if it is fine.

    ``oldest`` is the earliest start accepted (now - INGEST_MAX_SAMPLE_AGE_DAYS). Comparisons
    and differences of aware datetimes never overflow, whatever their offsets (``0001-01-01``
    at ``+23:59`` is before year 1 in UTC): such a sample is rejected here, before anything
    converts it to UTC.
    """
    energy = sample.energy_j
    if not math.isfinite(energy):
        return ("energy_j", "must be a finite number")
    if energy < 0:
        return ("energy_j", "must not be negative")
    if sample.start < oldest:
        return ("start", f"is before {oldest:%Y-%m-%d %H:%M}Z, older than samples are accepted")
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


# A stored interval of the same GPU: (start, end, energy_j).
Interval = tuple[datetime, datetime, float]


def interval_conflict(
    stored: list[Interval],
    starts: list[datetime],
    *,
    start: datetime,
    end: datetime,
    energy_j: float,
) -> tuple[bool, Interval] | None:
    """How a new interval meets one GPU's stored intervals (sorted by start; ``starts`` are
    their starts): None when it overlaps none of them, else (is an exact duplicate - same start,
    end and energy -, the stored interval it meets).

    Stored intervals of a GPU are disjoint, so sorted by start they are sorted by end too: the
    one with the greatest start before the new end is the only one that can overlap (any other
    ends at or before that one's start). PostgreSQL applies the same rule with one index probe
    per sample (``_PG_WRITE`` in services).
    """
    position = bisect.bisect_left(starts, end)
    if position == 0:
        return None
    candidate = stored[position - 1]
    if candidate[0] == start and candidate[1] == end and candidate[2] == energy_j:
        return (True, candidate)
    return (False, candidate) if candidate[1] > start else None
