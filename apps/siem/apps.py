from django.apps import AppConfig


class SiemConfig(AppConfig):
    name = "apps.siem"
    label = "siem"

    def ready(self) -> None:
        from apps.audit.hooks import register_appended
        from apps.siem.services import siem_on_append

        register_appended(siem_on_append)
        # Publishing by name needs the tasks registered in every process (web too), not only in workers.
        import apps.siem.tasks  # noqa: F401
