from django.contrib import admin

from ecoreport.savings.models import SitePrice


@admin.register(SitePrice)
class SitePriceAdmin(admin.ModelAdmin):
    list_display = ("site", "organization", "price_per_kwh", "currency", "updated_at")
    list_filter = ("organization", "currency")
