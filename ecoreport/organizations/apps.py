from django.apps import AppConfig


class OrganizationsConfig(AppConfig):
    name = "ecoreport.organizations"
    label = "organizations"
