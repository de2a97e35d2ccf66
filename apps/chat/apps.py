from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "apps.chat"
    label = "chat"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.chat import (
            retention,
            tasks,  # noqa: F401 - registered in every process: services queue them by name
        )
        from apps.chat.auth import on_tenant_saved
        from apps.policies.models import Category
        from apps.policies.registry import register_eraser, register_purger
        from apps.tenants.models import Tenant

        register_purger(Category.TRANSCRIPTS, retention.purge_transcripts)
        register_eraser("transcripts", retention.erase_transcripts)
        # Cached API-key lookups carry the tenant's state: a suspended tenant's keys must stop at once.
        post_save.connect(on_tenant_saved, sender=Tenant, dispatch_uid="chat-forget-tenant-keys")
