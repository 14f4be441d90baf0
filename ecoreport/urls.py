from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ecoreport.accounting.views import UsageView
from ecoreport.core.views import healthz
from ecoreport.telemetry.views import AgentPingView, IngestView

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/v1/ingest", IngestView.as_view(), name="ingest"),
    path("api/v1/agent/ping", AgentPingView.as_view(), name="agent-ping"),
    path("api/v1/usage", UsageView.as_view(), name="usage"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
