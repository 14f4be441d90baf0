from django.apps import AppConfig


class CodeCarbonConfig(AppConfig):
    name = "ecoreport.codecarbon"
    label = "codecarbon"
