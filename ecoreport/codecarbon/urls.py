"""CodeCarbon's paths, without a trailing slash: the tracker concatenates ``/runs`` and
``/emissions`` onto its ``api_endpoint``, and an APPEND_SLASH redirect would drop the POST body."""

from django.urls import path

from ecoreport.codecarbon.views import EmissionCreateView, RunCreateView

urlpatterns = [
    path("runs", RunCreateView.as_view(), name="codecarbon-runs"),
    path("emissions", EmissionCreateView.as_view(), name="codecarbon-emissions"),
]
