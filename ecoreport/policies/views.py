"""Targets and webhooks API. Every queryset starts from the caller's organization, so an id of
another organization's target is simply not found."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from ecoreport.core.api import ApiError, validated
from ecoreport.core.enqueue import enqueue_on_commit
from ecoreport.core.throttling import ApiThrottle
from ecoreport.organizations.api import OrgApiView, OrgScopedMixin
from ecoreport.organizations.models import Role
from ecoreport.organizations.permissions import IsOrgAdmin, IsOrgMember, request_membership
from ecoreport.policies.models import AlertSubscription, Target, Webhook
from ecoreport.policies.selectors import evaluations_for_target, targets_for_org
from ecoreport.policies.serializers import (
    AlertSubscriptionSerializer,
    TargetSerializer,
    TargetStatusSerializer,
    WebhookSerializer,
)
from ecoreport.policies.services import target_create, target_update

MAX_HISTORY = 1000


class IsOrgAdminForAll(BasePermission):
    """Webhook URLs (a Slack URL is itself a credential) are for admins to read too."""

    message = "Only organization admins can see or change webhooks."

    def has_permission(self, request: Request, view: object) -> bool:
        membership = request_membership(request)
        return membership is not None and membership.has_role(Role.ADMIN)


def _evaluate_soon(target: Target) -> None:
    # A new or changed target shows a status within seconds instead of at the next hourly run.
    enqueue_on_commit("policies.evaluate_target", target.pk)


@extend_schema(tags=["targets"])
class TargetListView(OrgScopedMixin, generics.ListCreateAPIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]
    serializer_class = TargetSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Target]:
        return targets_for_org(self.organization).order_by("name", "id")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "organization": self.organization}

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(self.get_serializer(data=request.data))
        with transaction.atomic():
            target = target_create(organization=self.organization, **data)
            _evaluate_soon(target)
        return Response(self.get_serializer(target).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["targets"])
class TargetDetailView(OrgScopedMixin, generics.RetrieveUpdateDestroyAPIView):
    permission_classes = [IsOrgAdmin]
    throttle_classes = [ApiThrottle]
    serializer_class = TargetSerializer

    def get_queryset(self) -> QuerySet[Target]:
        return targets_for_org(self.organization)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "organization": self.organization}

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        target = self.get_object()
        serializer = self.get_serializer(
            target, data=request.data, partial=kwargs.get("partial", False)
        )
        data = validated(serializer)
        with transaction.atomic():
            target = target_update(target=target, **data)
            _evaluate_soon(target)
        return Response(self.get_serializer(target).data)


@extend_schema(tags=["targets"])
class TargetStatusView(OrgApiView):
    permission_classes = [IsOrgMember]

    @extend_schema(
        summary="A target's latest status and its evaluation history (newest first)",
        parameters=[
            OpenApiParameter(
                "limit", int, description=f"history rows, 1-{MAX_HISTORY}; default 100"
            )
        ],
        responses=TargetStatusSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        target = self.org_object(targets_for_org(self.organization), "target", pk=pk)
        try:
            limit = int(request.query_params.get("limit", 100))
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_HISTORY:
            raise ApiError(f"limit must be a whole number from 1 to {MAX_HISTORY}.")
        history = list(evaluations_for_target(target, limit=limit).select_related("target"))
        body = {
            "target": target,
            "status": target.status or "not_evaluated",
            "status_changed_at": target.status_changed_at,
            "latest": history[0] if history else None,
            "history": history,
        }
        return Response(
            TargetStatusSerializer(body, context={"organization": target.organization}).data
        )


@extend_schema(tags=["webhooks"])
class WebhookListView(OrgScopedMixin, generics.ListCreateAPIView):
    permission_classes = [IsOrgAdminForAll]
    throttle_classes = [ApiThrottle]
    serializer_class = WebhookSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Webhook]:
        return self.org_objects(Webhook).order_by("created_at", "id")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(self.get_serializer(data=request.data))
        webhook = Webhook.objects.create(organization=self.organization, **data)
        return Response(self.get_serializer(webhook).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["webhooks"])
class WebhookDetailView(OrgScopedMixin, generics.RetrieveUpdateDestroyAPIView):
    permission_classes = [IsOrgAdminForAll]
    throttle_classes = [ApiThrottle]
    serializer_class = WebhookSerializer

    def get_queryset(self) -> QuerySet[Webhook]:
        return self.org_objects(Webhook)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        webhook = self.get_object()
        data = validated(
            self.get_serializer(webhook, data=request.data, partial=kwargs.get("partial", False))
        )
        for name, value in data.items():
            setattr(webhook, name, value)
        webhook.save()
        return Response(self.get_serializer(webhook).data)


@extend_schema(
    tags=["alerts"], request=AlertSubscriptionSerializer, responses=AlertSubscriptionSerializer
)
class AlertSubscriptionView(OrgApiView):
    """The caller's own opt-in to alert emails about their teams' targets."""

    permission_classes = [IsOrgMember]

    def get(self, request: Request) -> Response:
        subscription = AlertSubscription.objects.filter(membership=self.membership).first()
        return Response({"email_alerts": bool(subscription and subscription.email_alerts)})

    def put(self, request: Request) -> Response:
        data = validated(AlertSubscriptionSerializer(data=request.data))
        AlertSubscription.objects.update_or_create(
            membership=self.membership, defaults={"email_alerts": data["email_alerts"]}
        )
        return Response({"email_alerts": data["email_alerts"]})
