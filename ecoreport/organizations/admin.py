from django.contrib import admin

from ecoreport.organizations.models import ApiToken, Membership, Organization, Project, Team


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "organization", "auto_created"]
    list_filter = ["organization", "auto_created"]
    search_fields = ["slug", "name"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "organization", "team", "auto_created"]
    list_filter = ["organization", "auto_created"]
    search_fields = ["slug", "name"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role"]
    list_filter = ["organization", "role"]
    filter_horizontal = ["teams"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["key_prefix", "membership", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["key_hash", "key_prefix", "created_at", "last_used_at"]
