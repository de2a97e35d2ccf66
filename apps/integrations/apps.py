from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "apps.integrations"
    label = "integrations"

    def ready(self) -> None:
        # A malformed HUB_CONNECTORS entry must stop start-up, not surface on the first console click.
        from apps.integrations.conf import connector_registry

        connector_registry()

        # Register the tasks in every process (web too): services queue them by name (services/dispatch.py).
        from apps.integrations import tasks  # noqa: F401
        from apps.integrations.services import outbox, sync
        from apps.policies.models import Category
        from apps.policies.registry import register_eraser, register_purger

        register_purger(Category.SYNCED_RECORDS, sync.purge_synced_records)
        register_purger(Category.SYNC_LOGS, sync.purge_sync_logs)
        register_purger(Category.DELIVERED_WRITES, outbox.purge_delivered_writes)
        register_eraser("synced_records", sync.erase_synced_records)
        register_eraser("outbox", outbox.erase_outbox)

        # Data-subject requests (issue 22): what this app holds about a person, and telling the vendors.
        from apps.integrations.services import subject_requests
        from apps.integrations.signals import outbox_settled
        from apps.policies.registry import register_erasure_notifier, register_exporter

        register_exporter("synced_records", subject_requests.export_synced_records)
        register_exporter("outbox_messages", subject_requests.export_outbox_messages)
        register_erasure_notifier("crm", subject_requests.OutboxErasureNotifier())
        outbox_settled.connect(_on_outbox_settled, dispatch_uid="integrations-dsr-erasure-settled")


def _on_outbox_settled(sender: object, *, message: object, status: str, **kwargs: object) -> None:
    from apps.integrations.services.subject_requests import erasure_settled

    erasure_settled(message=message, status=status)  # type: ignore[arg-type]
