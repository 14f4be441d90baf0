from django.contrib import admin

from ecoreport.telemetry.models import (
    DirtyHour,
    EnergySample,
    IngestBatch,
    LabelBudgetNotice,
    SampleShare,
)


@admin.register(IngestBatch)
class IngestBatchAdmin(admin.ModelAdmin):
    list_display = ["batch_id", "organization", "host", "received_at"]
    list_filter = ["organization"]
    readonly_fields = ["organization", "batch_id", "host", "received_at", "response"]


class SampleShareInline(admin.TabularInline):
    model = SampleShare
    extra = 0
    readonly_fields = [
        "team",
        "project",
        "job_id",
        "user",
        "share",
        "energy_j",
        "attributed",
        "idle",
    ]
    exclude = ["organization"]


@admin.register(EnergySample)
class EnergySampleAdmin(admin.ModelAdmin):
    list_display = ["gpu", "start", "end", "energy_j", "method", "split", "gpu_util_pct"]
    list_filter = ["organization", "method", "split"]
    raw_id_fields = ["gpu", "host"]
    inlines = [SampleShareInline]
    show_full_result_count = False


@admin.register(DirtyHour)
class DirtyHourAdmin(admin.ModelAdmin):
    list_display = ["organization", "hour", "created_at"]


@admin.register(LabelBudgetNotice)
class LabelBudgetNoticeAdmin(admin.ModelAdmin):
    list_display = ["organization", "day", "refused", "first_label", "notified_at"]
    list_filter = ["organization"]
    readonly_fields = ["organization", "day", "refused", "first_label", "created_at", "notified_at"]
