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
