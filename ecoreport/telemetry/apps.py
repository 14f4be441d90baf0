from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "ecoreport.telemetry"
    label = "telemetry"
