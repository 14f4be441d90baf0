from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "ecoreport.fleet"
    label = "fleet"
