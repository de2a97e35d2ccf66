from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"

    def ready(self) -> None:
        from apps.audit.roles import audit_roles_after_migrate, audit_roles_before_migrate
        from apps.core.migrate_hooks import MigrateHooks, migrate_hooks_register

        migrate_hooks_register(
            app_label=self.label,
            hooks=MigrateHooks(before=audit_roles_before_migrate, after=audit_roles_after_migrate),
        )
