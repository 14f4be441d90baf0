from django.apps import AppConfig


class CarbonConfig(AppConfig):
    name = "ecoreport.carbon"
    label = "carbon"
    verbose_name = "Carbon accounting"

    def ready(self) -> None:
        # Carbon's writes send ``carbon.recompute_emissions`` by name (core.enqueue), which looks
        # the task up in the Celery app's registry. Only a worker imports the tasks modules on
        # its own; a web process must register the task too, or every recompute it asks for is
        # dropped with a KeyError after the commit.
        from ecoreport.carbon import tasks  # noqa: F401
