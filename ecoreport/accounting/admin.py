from django.contrib import admin

from ecoreport.accounting.models import HourlyUsage


@admin.register(HourlyUsage)
class HourlyUsageAdmin(admin.ModelAdmin):
    list_display = [
        "hour",
        "organization",
        "gpu",
        "team",
        "project",
        "energy_j",
        "idle_energy_j",
        "gpu_seconds",
    ]
    list_filter = ["organization"]
    raw_id_fields = ["gpu", "host", "site", "team", "project"]
    show_full_result_count = False
