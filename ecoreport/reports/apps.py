from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "ecoreport.reports"
    label = "reports"
    verbose_name = "Sustainability reports"
