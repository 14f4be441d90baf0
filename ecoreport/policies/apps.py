from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "ecoreport.policies"
    label = "policies"
    verbose_name = "Policy targets and alerts"
