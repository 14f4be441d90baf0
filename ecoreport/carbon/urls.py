from django.urls import path

from ecoreport.carbon import views

urlpatterns = [
    path("sites", views.SitesView.as_view(), name="sites"),
    path("sites/<str:slug>", views.SiteDetailView.as_view(), name="site"),
    path("sites/<str:slug>/pue", views.SitePueView.as_view(), name="site-pue"),
    path(
        "sites/<str:slug>/instruments", views.SiteInstrumentsView.as_view(), name="site-instruments"
    ),
    path(
        "sites/<str:slug>/instruments/<int:pk>",
        views.SiteInstrumentDetailView.as_view(),
        name="site-instrument",
    ),
    path("carbon-intensity", views.FactorsView.as_view(), name="carbon-intensity"),
    path(
        "carbon-intensity/<int:pk>",
        views.FactorDetailView.as_view(),
        name="carbon-intensity-factor",
    ),
]
