from django.apps import AppConfig


class CarbonConfig(AppConfig):
    name = "ecoreport.carbon"
    label = "carbon"
    verbose_name = "Carbon accounting"
