from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "ecoreport.metrics"
    label = "metrics"
