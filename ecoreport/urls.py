from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ecoreport.accounting.views import UsageProvenanceView, UsageView
from ecoreport.core.api import api_not_found
from ecoreport.core.views import healthz
from ecoreport.dashboards import views as pages
from ecoreport.dashboards.savings_page import savings as savings_page
from ecoreport.dashboards.savings_page import savings_results, top_recommendations
from ecoreport.dashboards.targets import targets as targets_page
from ecoreport.metrics.views import MetricsView
from ecoreport.organizations.views import invitation as invitation_page
from ecoreport.policies.views import (
    AlertSubscriptionView,
    TargetDetailView,
    TargetListView,
    TargetStatusView,
    WebhookDetailView,
    WebhookListView,
)
from ecoreport.reports import views as reports
from ecoreport.savings import carbon_aware
from ecoreport.savings.views import BestWindowView, SavingsAssumptionsView, SavingsView
from ecoreport.telemetry.views import AgentPingView, IngestView

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Where Prometheus looks by default (metrics_path), outside /api/v1 like exporters' own.
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("api/v1/ingest", IngestView.as_view(), name="ingest"),
    path("api/v1/agent/ping", AgentPingView.as_view(), name="agent-ping"),
    path("api/v1/usage", UsageView.as_view(), name="usage"),
    path("api/v1/usage/provenance", UsageProvenanceView.as_view(), name="usage-provenance"),
    path("api/v1/", include("ecoreport.carbon.urls")),
    path("api/codecarbon/", include("ecoreport.codecarbon.urls")),
    path("api/v1/carbon/best-window", BestWindowView.as_view(), name="carbon-best-window"),
    path("api/v1/savings", SavingsView.as_view(), name="savings"),
    path(
        "api/v1/savings/assumptions", SavingsAssumptionsView.as_view(), name="savings-assumptions"
    ),
    path("api/v1/targets", TargetListView.as_view(), name="targets"),
    path("api/v1/targets/<int:pk>", TargetDetailView.as_view(), name="target"),
    path("api/v1/targets/<int:pk>/status", TargetStatusView.as_view(), name="target-status"),
    path("api/v1/webhooks", WebhookListView.as_view(), name="webhooks"),
    path("api/v1/webhooks/<int:pk>", WebhookDetailView.as_view(), name="webhook"),
    path("api/v1/alerts/subscription", AlertSubscriptionView.as_view(), name="alert-subscription"),
    path("api/v1/reports", reports.ReportListView.as_view(), name="reports"),
    path("api/v1/reports/<int:pk>", reports.ReportDetailView.as_view(), name="report"),
    path(
        "api/v1/reports/<int:pk>/download/<str:fmt>",
        reports.ReportDownloadView.as_view(),
        name="report-download",
    ),
    # The Carbon Aware SDK's WebAPI routes, under a prefix of their own (docs/integrations.md).
    path(
        "api/carbon-aware/emissions/forecasts/current",
        carbon_aware.ForecastCurrentView.as_view(),
        name="carbon-aware-forecasts-current",
    ),
    path(
        "api/carbon-aware/emissions/bylocation",
        carbon_aware.ByLocationView.as_view(),
        name="carbon-aware-bylocation",
    ),
    path(
        "api/carbon-aware/locations",
        carbon_aware.LocationsView.as_view(),
        name="carbon-aware-locations",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # Last of the API: anything else under /api/ is a JSON 404, whatever DEBUG says.
    re_path(r"^api/", api_not_found),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("invitations/<str:token>/", invitation_page, name="invitation"),
    path("", pages.overview, name="overview"),
    path("teams/<str:slug>/", pages.team, name="team"),
    path("projects/<str:slug>/", pages.project, name="project"),
    path("fleet/", pages.fleet, name="fleet"),
    path("fleet/live.json", pages.fleet_live, name="fleet-live"),
    path("carbon/", pages.carbon, name="carbon"),
    path("jobs/<path:job_id>/", pages.job, name="job"),
    path("hosts/<str:hostname>/", pages.host, name="host"),
    path("gpus/<path:uuid>/", pages.gpu, name="gpu"),  # MIG UUIDs have slashes
    path("users/<str:name>/", pages.user, name="user"),
    path("targets/", targets_page, name="targets"),
    path("savings/", savings_page, name="savings-page"),
    path("savings/results.json", savings_results, name="savings-results"),
    path("savings/top/", top_recommendations, name="savings-top"),
    path("manage/", include("ecoreport.dashboards.manage.urls")),
    path("reports/", reports.reports_page, name="reports-page"),
    path("reports/<int:pk>/", reports.report_page, name="report-page"),
    path("reports/<int:pk>/status.json", reports.report_status_page, name="report-status"),
    path("reports/<int:pk>/<str:fmt>", reports.report_file_page, name="report-file"),
]
