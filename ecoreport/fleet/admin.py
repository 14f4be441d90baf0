from django.contrib import admin

from ecoreport.fleet.models import AgentCredential, Gpu, GpuClaimConflict, Host, Site


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "organization", "grid_zone", "pue", "provider"]
    list_filter = ["organization", "grid_zone"]


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = [
        "hostname",
        "organization",
        "site",
        "default_team",
        "default_project",
        "last_seen_at",
    ]
    list_filter = ["organization", "site"]
    search_fields = ["hostname"]


@admin.register(Gpu)
class GpuAdmin(admin.ModelAdmin):
    list_display = ["uuid", "host", "index", "name", "power_limit_w", "last_seen_at"]
    list_filter = ["organization", "name"]
    search_fields = ["uuid", "host__hostname"]


@admin.register(AgentCredential)
class AgentCredentialAdmin(admin.ModelAdmin):
    list_display = [
        "key_prefix",
        "host",
        "organization",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = ["key_hash", "key_prefix", "created_at", "last_used_at"]


@admin.register(GpuClaimConflict)
class GpuClaimConflictAdmin(admin.ModelAdmin):
    # Deleting a row only clears the fleet page's warning; the refused samples stay refused.
    list_display = ["gpu", "claimant", "samples_refused", "first_at", "last_at", "organization"]
    list_filter = ["organization"]
    readonly_fields = ["gpu", "claimant", "samples_refused", "first_at", "last_at"]
