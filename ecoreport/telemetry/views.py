"""Ingest API v1: the agents' only way in. See docs/api.md for the contract."""

from __future__ import annotations

import zlib

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ecoreport.core.api import ApiError
from ecoreport.core.throttling import IngestThrottle
from ecoreport.fleet.authentication import AgentTokenAuthentication, IsAgent
from ecoreport.telemetry.schema import decode_batch
from ecoreport.telemetry.services import samples_ingest


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(
        f"{what} is larger than {limit} bytes; send smaller batches.",
        code="too_large",
        status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def read_body(request: Request) -> bytes:
    """The request body, gunzipped when it says so, within the configured size limits."""
    django_request = request._request
    limit = settings.INGEST_MAX_BODY_BYTES
    declared = django_request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise _too_large("The body", limit)
    raw = django_request.read(limit + 1)
    if len(raw) > limit:
        raise _too_large("The body", limit)
    encoding = django_request.META.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise ApiError(
            f"Content-Encoding {encoding!r} is not supported; use gzip or none.",
            code="unsupported_encoding",
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    max_out = settings.INGEST_MAX_DECOMPRESSED_BYTES
    inflater = zlib.decompressobj(wbits=31)
    try:
        body = inflater.decompress(raw, max_out + 1)
    except zlib.error as error:
        raise ApiError(f"The body is not valid gzip: {error}", code="malformed") from None
    if len(body) > max_out or inflater.unconsumed_tail:
        raise _too_large("The decompressed body", max_out)
    if not inflater.eof:
        raise ApiError("The gzip body is truncated.", code="malformed")
    return body


_IngestAnswer = inline_serializer(
    "IngestAnswer",
    fields={
        "batch_id": serializers.UUIDField(),
        "accepted": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "rejected": serializers.ListField(
            child=inline_serializer(
                "IngestRejection",
                fields={
                    "index": serializers.IntegerField(),
                    "field": serializers.CharField(),
                    "error": serializers.CharField(),
                },
            )
        ),
        # Additive (present only when non-empty): samples stored, but a label was cleaned or
        # not registered (label budget); see docs/api.md.
        "warnings": serializers.ListField(
            required=False,
            child=inline_serializer(
                "IngestWarning",
                fields={
                    "index": serializers.IntegerField(),
                    "field": serializers.CharField(),
                    "warning": serializers.CharField(),
                },
            ),
        ),
    },
)


class IngestView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAgent]
    throttle_classes = [IngestThrottle]
    parser_classes: list = []

    @extend_schema(
        summary="Ingest a batch of GPU interval samples (agents only)",
        request={"application/json": OpenApiTypes.OBJECT},
        # 400, 401, 415 and 429 come with the error schema from ecoreport.core.schema.
        responses={200: _IngestAnswer, 413: OpenApiResponse(description="body too large")},
        examples=[
            OpenApiExample(
                "answer",
                value={
                    "batch_id": "3f6c1c1e-8f0e-4c8e-9d7a-1f3c2b5a9e10",
                    "accepted": 998,
                    "duplicates": 1,
                    "rejected": [
                        {"index": 7, "field": "energy_j", "error": "must not be negative"}
                    ],
                    "warnings": [
                        {
                            "index": 0,
                            "field": "attribution[0].team",
                            "warning": "label 'team-4711' not registered: agents may register "
                            "100 new teams per batch and 1000 per organization per day; this "
                            "share is stored unattributed",
                        }
                    ],
                },
                response_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        # A PayloadError is a 400 "The batch is malformed: ..." (ecoreport.core.api).
        batch = decode_batch(read_body(request))
        if len(batch.samples) > settings.INGEST_MAX_SAMPLES:
            raise _too_large(
                f"A batch of {len(batch.samples)} samples", settings.INGEST_MAX_SAMPLES
            )
        result = samples_ingest(credential=request.auth, batch=batch)
        return Response(result.as_response())


class AgentPingView(APIView):
    """Lets ``ecoreport-agent check`` confirm that the server accepts its token."""

    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        summary="Check an agent token",
        responses=inline_serializer(
            "AgentPing",
            fields={"organization": serializers.CharField(), "host": serializers.CharField()},
        ),
    )
    def get(self, request: Request) -> Response:
        credential = request.auth
        return Response(
            {"organization": credential.organization.slug, "host": credential.host.hostname}
        )
