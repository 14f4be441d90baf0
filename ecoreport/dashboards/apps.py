from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    name = "ecoreport.dashboards"
    label = "dashboards"
