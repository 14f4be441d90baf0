"""What turns energy into emissions: grid carbon-intensity factors, the PUE of each site over
time, and a site's market-based instruments (contracts, residual mix, certificates).

Factors are shared reference data (``organization`` null: built-in defaults, imported files,
live providers) or an organization's own (its admins' figures for a zone, used for its sites
only and preferred over shared ones of the same resolution).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization, OrgScopedQuerySet

WORLD_ZONE = "WORLD"
# A counter in the cache that every factor change moves on: caches of figures derived from the
# factors (the dashboards' zone averages) include it in their keys.
FACTORS_VERSION_KEY = "carbon:factors-version"
MAX_INTENSITY_G_PER_KWH = 2000.0
# Open ends of a period: the first PUE period of a site reaches back before any measurement could
# exist, and a recompute without an end runs to the end of time.
SINCE_EVER = datetime(2000, 1, 1, tzinfo=UTC)
UNTIL_EVER = datetime(2200, 1, 1, tzinfo=UTC)


class Resolution(models.TextChoices):
    HOUR = "hour", "Hour"
    MONTH = "month", "Calendar month"
    YEAR = "year", "Calendar year"


class Basis(models.TextChoices):
    LOCATION = "location", "Location-based"
    MARKET = "market", "Market-based"
    # A marginal rate (e.g. WattTime co2_moer): the emissions of the next kWh, not the grid's
    # average. It steers timing decisions only; GHG Protocol Scope 2 reports never use it.
    MARGINAL = "marginal", "Marginal (timing signals only)"


class Scope(models.TextChoices):
    LIFECYCLE = "lifecycle", "Lifecycle (incl. upstream)"
    DIRECT = "direct", "Direct (combustion only)"
    OPERATIONAL = "operational", "Operational (as published by a cloud provider)"


class CarbonIntensityQuerySet(models.QuerySet):
    def visible_to(self, org: Organization | int) -> CarbonIntensityQuerySet:
        """Shared factors plus the organization's own; never another organization's."""
        return self.filter(models.Q(organization__isnull=True) | models.Q(organization=org))


class CarbonIntensity(models.Model):
    """One factor: g CO2e per kWh for a zone over one hour, calendar month or calendar year."""

    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    zone = models.CharField(max_length=64)
    resolution = models.CharField(max_length=8, choices=Resolution.choices)
    start = models.DateTimeField()
    end = models.DateTimeField()
    intensity_g_per_kwh = models.FloatField(
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_INTENSITY_G_PER_KWH)]
    )
    basis = models.CharField(max_length=8, choices=Basis.choices, default=Basis.LOCATION)
    source = models.CharField(max_length=300)
    year = models.PositiveSmallIntegerField(help_text="Year of the underlying data.")
    scope = models.CharField(max_length=12, choices=Scope.choices, default=Scope.LIFECYCLE)
    # Forecasts from a live provider are replaced by actuals when those arrive.
    is_forecast = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = CarbonIntensityQuerySet.as_manager()

    class Meta:
        ordering = ["zone", "basis", "start", "resolution"]
        indexes = [models.Index(fields=["zone", "basis", "resolution", "start"], name="ci_lookup")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(intensity_g_per_kwh__gte=0)
                & models.Q(intensity_g_per_kwh__lte=MAX_INTENSITY_G_PER_KWH),
                name="ci_intensity_range",
            ),
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="ci_period"),
        ]

    def __str__(self) -> str:
        return f"{self.zone} {self.resolution} {self.start:%Y-%m-%d %H:%M} {self.intensity_g_per_kwh} g/kWh"


class SitePue(models.Model):
    """The PUE of a site from ``valid_from`` until the next period starts."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="pue_periods")
    valid_from = models.DateTimeField()
    pue = models.DecimalField(
        max_digits=4, decimal_places=3, validators=[MinValueValidator(Decimal("1.0"))]
    )
    source = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["site", "valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["site", "valid_from"], name="sitepue_unique_start"),
            models.CheckConstraint(condition=models.Q(pue__gte=1), name="sitepue_at_least_one"),
        ]


class InstrumentKind(models.TextChoices):
    SUPPLIER = "supplier", "Supplier-specific emission factor (contract)"
    RESIDUAL = "residual", "Residual mix factor"
    CERTIFICATE = "certificate", "Energy attribute certificates (GO, REC, I-REC)"


class MarketInstrument(models.Model):
    """A contractual instrument of a site for market-based reporting (GHG Protocol Scope 2).

    A supplier-specific factor takes precedence over a residual mix; certificates cover
    ``covered_share`` of the site's consumption at 0 g/kWh while they are valid.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="market_instruments")
    kind = models.CharField(max_length=12, choices=InstrumentKind.choices)
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True, help_text="Exclusive; empty: open.")
    intensity_g_per_kwh = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_INTENSITY_G_PER_KWH)],
    )
    covered_share = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    source = models.CharField(max_length=300)
    year = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["site", "valid_from", "id"]
