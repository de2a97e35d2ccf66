from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "apps.observability"
    label = "observability"

    def ready(self) -> None:
        from apps.observability import celery_signals  # noqa: F401 - connects the Celery signal handlers
