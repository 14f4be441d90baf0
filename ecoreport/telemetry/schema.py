"""The ingest API v1 payload, decoded and shape-checked by msgspec.

Shape errors (wrong types, missing fields, malformed JSON, JSON nested deeper than any payload,
invalid UTF-8, unstorable characters in the host's or GPUs' names, an inventory that contradicts
itself) fail the whole batch with a 400. Plausibility (negative energy, intervals, shares, age...)
is judged per sample in ``validation``; labels of any length or script are cleaned there too, so
that one odd label never costs a batch.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from ecoreport.core.errors import DomainError

UtcDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# Labels have no length limit here: ``validation.clean_label`` truncates them per sample. The
# body size limits bound them.
Label = str
# Names stored as they are (host, agent version, GPU uuid and model): no control characters
# (PostgreSQL cannot store NUL) and no lone surrogates (not encodable in UTF-8).
_PRINTABLE = r"\A[^\x00-\x1f\x7f\ud800-\udfff]*\Z"


def _name(min_length: int, max_length: int) -> msgspec.Meta:
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=_PRINTABLE)


class AgentIn(msgspec.Struct):
    hostname: Annotated[str, _name(1, 255)]
    version: Annotated[str, _name(0, 32)] = ""


class GpuIn(msgspec.Struct):
    uuid: Annotated[str, _name(1, 96)]
    index: Annotated[int, msgspec.Meta(ge=0, le=1024)] = 0
    name: Annotated[str, _name(0, 128)] = ""
    # PostgreSQL's integer column: a larger value would be a database error, not a 400.
    memory_total_mib: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None
    power_limit_w: Annotated[float, msgspec.Meta(gt=0, le=10_000)] | None = None


class AttributionIn(msgspec.Struct):
    share: float
    project: Label | None = None
    team: Label | None = None
    user: Label | None = None
    job_id: Label | None = None


class SampleIn(msgspec.Struct):
    gpu_uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=96)]
    start: UtcDatetime
    end: UtcDatetime
    energy_j: float
    method: Literal["counter", "power_integration"]
    gpu_util_pct: float | None = None
    mem_util_pct: float | None = None
    mem_used_mib: float | None = None
    power_max_w: float | None = None
    temperature_c: float | None = None
    attribution: list[AttributionIn] = []
    # How the agent divided the energy among the processes sharing the GPU: one process,
    # by each one's utilization, or evenly. Absent (agents before it, idle intervals) = unknown.
    split: Literal["single", "utilization", "even"] | None = None


class BatchIn(msgspec.Struct):
    batch_id: uuid.UUID
    agent: AgentIn
    samples: list[SampleIn]
    gpus: list[GpuIn] = []


_decoder = msgspec.json.Decoder(BatchIn)


class PayloadError(DomainError):
    """The body is not a valid ingest payload; nothing of it is stored."""

    code = "malformed"
    message_prefix = "The batch is malformed: "

    def __init__(self, message: str) -> None:
        super().__init__(
            message.replace(f"matching regex {_PRINTABLE!r}", "without control characters")
        )


def decode_batch(raw: bytes) -> BatchIn:
    try:
        batch = _decode(raw)
    except RecursionError:
        # msgspec and json both give up on deep nesting (a payload is at most 4 levels deep
        # where it is not ignored): a malformed body, not a server error.
        raise PayloadError("JSON nested too deeply") from None
    problem = inventory_problem(batch.gpus)
    if problem is not None:
        raise PayloadError(problem)
    return batch


def _decode(raw: bytes) -> BatchIn:
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as fast_error:
        # Python agents serialise non-finite floats as NaN/Infinity, which strict JSON
        # forbids. Those are implausible samples, not malformed batches: the slow path accepts
        # them so that they are rejected one by one with a reason, like any other bad sample.
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise PayloadError(str(fast_error)) from None
        try:
            return msgspec.convert(obj, type=BatchIn)
        except msgspec.ValidationError as error:
            raise PayloadError(str(error)) from None


def inventory_problem(gpus: list[GpuIn]) -> str | None:
    """Why the inventory contradicts itself, or None.

    The same GPU listed twice with different values would let the last entry win (list 100 W,
    then 700 W): the inventory must say one thing per GPU. A repeated identical entry is fine.
    """
    seen: dict[str, GpuIn] = {}
    for i, gpu in enumerate(gpus):
        first = seen.setdefault(gpu.uuid, gpu)
        if first is not gpu and first != gpu:
            return (
                f"gpus[{i}] lists GPU {gpu.uuid!r} again with different values; "
                "list each GPU once - at `$.gpus`"
            )
    return None
