"""In-app administration for organization admins: sites, factors, agent and CodeCarbon tokens,
members."""

from django.urls import path

from ecoreport.dashboards.manage import agents, codecarbon, factors, members, sites, views

app_name = "manage"
urlpatterns = [
    path("", views.index, name="index"),
    path("sites/", sites.sites, name="sites"),
    path("sites/<int:pk>/", sites.site, name="site"),
    path("sites/<int:pk>/pue", sites.site_pue, name="site-pue"),
    path("sites/<int:pk>/instruments", sites.site_instrument_add, name="site-instruments"),
    path(
        "sites/<int:pk>/instruments/<int:instrument_pk>/delete",
        sites.site_instrument_delete,
        name="site-instrument-delete",
    ),
    path("factors/", factors.factors, name="factors"),
    path("factors/import", factors.factors_import, name="factors-import"),
    path("factors/<int:pk>/delete", factors.factor_remove, name="factor-delete"),
    path("agents/", agents.agents, name="agents"),
    path("agents/<int:pk>/revoke", agents.agent_revoke, name="agent-revoke"),
    path("codecarbon/", codecarbon.codecarbon_tokens, name="codecarbon"),
    path(
        "codecarbon/<int:pk>/revoke", codecarbon.codecarbon_token_revoke, name="codecarbon-revoke"
    ),
    path("members/", members.members, name="members"),
    path("members/<int:pk>/role", members.member_role, name="member-role"),
    path("members/<int:pk>/remove", members.member_remove, name="member-remove"),
    path(
        "members/invitations/<int:pk>/revoke",
        members.invitation_remove,
        name="invitation-revoke",
    ),
    path("api-tokens/", members.api_tokens, name="api-tokens"),
    path("api-tokens/<int:pk>/revoke", members.api_token_remove, name="api-token-revoke"),
]
