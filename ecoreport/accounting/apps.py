from django.apps import AppConfig


class AccountingConfig(AppConfig):
    name = "ecoreport.accounting"
    label = "accounting"
