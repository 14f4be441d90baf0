from django.apps import AppConfig


class SavingsConfig(AppConfig):
    name = "ecoreport.savings"
    label = "savings"
