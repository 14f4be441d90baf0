"""Where the GPUs are: sites (datacenters or cloud regions), hosts, GPUs, and the credentials
their agents present."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from ecoreport.organizations.models import (
    HashedToken,
    Organization,
    OrgScopedQuerySet,
    Project,
    Team,
    slug_validator,
)


class Site(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sites")
    slug = models.CharField(max_length=64, validators=[slug_validator])
    name = models.CharField(max_length=200)
    grid_zone = models.CharField(max_length=64, help_text="Grid zone code, e.g. FR, US, GB.")
    pue = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("1.580"),
        validators=[MinValueValidator(Decimal("1.0"))],
        help_text="Power usage effectiveness (facility energy / IT energy).",
    )
    provider = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="site_unique_slug")
        ]

    def __str__(self) -> str:
        return self.slug


class Host(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="hosts")
    hostname = models.CharField(max_length=255)
    site = models.ForeignKey(
        Site, null=True, blank=True, on_delete=models.PROTECT, related_name="hosts"
    )
    default_team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    default_project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    agent_version = models.CharField(max_length=32, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["hostname"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "hostname"], name="host_unique_name")
        ]

    def __str__(self) -> str:
        return self.hostname


class Gpu(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="gpus")
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="gpus")
    uuid = models.CharField(max_length=96)
    index = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=128, blank=True)
    memory_total_mib = models.PositiveIntegerField(null=True, blank=True)
    power_limit_w = models.FloatField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["host__hostname", "index"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "uuid"], name="gpu_unique_uuid")
        ]

    def __str__(self) -> str:
        return f"{self.host}/{self.index} {self.name}"


class GpuClaimConflict(models.Model):
    """A host that listed a GPU another, live host reports: its samples of that GPU were refused.

    One row per GPU and claiming host, refreshed by every refused batch; the fleet page warns
    about the recent ones. Two simulators with the same host name and seed, or a cloned disk
    image carrying a fake UUID, are the usual causes (docs/agent.md, "One GPU, one host").
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="claim_conflicts")
    claimant = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    samples_refused = models.PositiveBigIntegerField(default=0)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-last_at", "id"]
        constraints = [models.UniqueConstraint(fields=["gpu", "claimant"], name="gpu_claim_unique")]

    def __str__(self) -> str:
        return f"{self.gpu.uuid} claimed by {self.claimant}"


class AgentCredential(HashedToken):
    """A hashed bearer token bound to one organization and one host; revocable."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="agent_credentials"
    )
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="credentials")

    objects = OrgScopedQuerySet.as_manager()

    class Meta(HashedToken.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.key_prefix}… for {self.host}"
