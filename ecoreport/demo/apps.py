from django.apps import AppConfig


class DemoConfig(AppConfig):
    """All demo seeding (``manage.py seed_demo``): the one app that may import every other, so
    that no domain app carries demo-only code and ``core`` imports none of them."""

    name = "ecoreport.demo"
    label = "demo"
