from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS


def _regions_sync_after_migrate(alias: str) -> None:
    """Make the Region rows match settings.HUB_REGIONS once the control database is migrated."""
    if alias == DEFAULT_DB_ALIAS:
        from apps.tenants.services import region_sync

        region_sync()


class TenantsConfig(AppConfig):
    name = "apps.tenants"
    label = "tenants"

    def ready(self) -> None:
        from apps.core.migrate_hooks import MigrateHooks, migrate_hooks_register

        migrate_hooks_register(app_label=self.label, hooks=MigrateHooks(migrated=_regions_sync_after_migrate))
