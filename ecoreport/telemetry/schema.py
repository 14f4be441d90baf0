"""The ingest API v1 payload, decoded and shape-checked by msgspec.

Shape errors (wrong types, missing fields, malformed JSON) fail the whole batch with a 400.
Plausibility (negative energy, intervals, shares...) is judged per sample in ``validation``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

UtcDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Label = Annotated[str, msgspec.Meta(max_length=256)]


class AgentIn(msgspec.Struct):
    hostname: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    version: Annotated[str, msgspec.Meta(max_length=32)] = ""


class GpuIn(msgspec.Struct):
    uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=96)]
    index: Annotated[int, msgspec.Meta(ge=0, le=1024)] = 0
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    memory_total_mib: Annotated[int, msgspec.Meta(ge=0)] | None = None
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


class BatchIn(msgspec.Struct):
    batch_id: uuid.UUID
    agent: AgentIn
    samples: list[SampleIn]
    gpus: list[GpuIn] = []


_decoder = msgspec.json.Decoder(BatchIn)


class PayloadError(ValueError):
    """The body is not a valid ingest payload; nothing of it is stored."""


def decode_batch(raw: bytes) -> BatchIn:
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as fast_error:
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
