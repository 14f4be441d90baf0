from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "ecoreport.core"
    label = "core"

    def ready(self) -> None:
        # Registers the bearer-token security schemes with drf-spectacular.
        from ecoreport.core import schema  # noqa: F401
