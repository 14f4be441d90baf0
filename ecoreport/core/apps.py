from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "ecoreport.core"
    label = "core"
