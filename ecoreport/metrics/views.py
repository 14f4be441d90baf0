"""``GET /metrics``: the caller's organization in the Prometheus exposition format."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.request import Request

from ecoreport.core.api import FileNegotiation
from ecoreport.metrics.exposition import metrics_render
from ecoreport.organizations.api import OrgApiView
from ecoreport.organizations.authentication import ApiTokenAuthentication

NO_TOKEN = (
    "/metrics needs an API token (eru_...) as a bearer token: "
    '"Authorization: Bearer <token>", in Prometheus the scrape config\'s authorization.credentials.'
)


class MetricsView(OrgApiView):
    # API tokens only: Prometheus sends one in the Authorization header, and a signed-in
    # browser's session is not a scraper.
    authentication_classes: ClassVar[list[Any]] = [ApiTokenAuthentication]
    # Prometheus asks for OpenMetrics or text/plain, which no JSON renderer offers; the answer
    # does not go through a renderer, and errors stay JSON.
    content_negotiation_class = FileNegotiation

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> None:
        # DRF's "Authentication credentials were not provided." does not say which credentials.
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated(NO_TOKEN)
        super().permission_denied(request, message, code)

    @extend_schema(
        summary="The caller's organization as Prometheus metrics (energy, emissions, GPUs, targets)",
        tags=["metrics"],
        responses={
            (200, "text/plain"): OpenApiTypes.STR,
            (200, "application/openmetrics-text"): OpenApiTypes.STR,
        },
    )
    def get(self, request: Request) -> HttpResponse:
        body, content_type = metrics_render(
            self.organization, now=timezone.now(), accept=request.META.get("HTTP_ACCEPT", "")
        )
        return HttpResponse(body, content_type=content_type)
