"""Electricity prices per site: what a saved kWh is worth.

A site without a price of its own uses ``SAVINGS_DEFAULT_PRICE_PER_KWH`` in
``SAVINGS_CURRENCY`` (environment; see ``ecoreport.savings.conf``). Prices apply to facility
energy (IT x PUE): that is what the electricity bill counts.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization, OrgScopedQuerySet

currency_validator = RegexValidator(r"^[A-Z]{3}$", "Use an ISO 4217 code such as EUR or USD.")


class SitePrice(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="electricity_price")
    price_per_kwh = models.DecimalField(
        max_digits=8, decimal_places=5, validators=[MinValueValidator(Decimal("0"))]
    )
    currency = models.CharField(max_length=3, validators=[currency_validator])
    source = models.CharField(max_length=300, blank=True, help_text="Tariff or contract.")
    updated_at = models.DateTimeField(default=timezone.now)

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        ordering = ["site"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(price_per_kwh__gte=0), name="siteprice_not_negative"
            )
        ]

    def __str__(self) -> str:
        return f"{self.site} {self.price_per_kwh} {self.currency}/kWh"
