from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "apps.chat"
    label = "chat"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.chat import (
            retention,
            tasks,
        )
        from apps.chat.auth import on_tenant_saved
        from apps.policies.models import Category
        from apps.policies.registry import register_eraser, register_purger
        from apps.tenants.models import Tenant

        register_purger(Category.TRANSCRIPTS, retention.purge_transcripts)
        register_eraser("transcripts", retention.erase_transcripts)
        # Data-subject access archives (issue 22): the person's conversations and what chat created for them.
        from apps.chat import subject_export
        from apps.policies.registry import register_exporter

        register_exporter("chat_transcripts", subject_export.export_transcripts)
        register_exporter("chat_created_records", subject_export.export_created_records)
        register_exporter("chat_transcript_audit", subject_export.export_transcript_audit)
        # Cached API-key lookups carry the tenant's state: a suspended tenant's keys must stop at once.
        post_save.connect(on_tenant_saved, sender=Tenant, dispatch_uid="chat-forget-tenant-keys")
        # Handoff (issue 18): integrations tells chat about ticket webhooks and ticket deliveries by signal
        # (integrations must not import chat); the receivers only queue a handoff refresh.
        from apps.integrations.signals import outbox_settled, ticket_activity

        ticket_activity.connect(tasks.on_ticket_activity, dispatch_uid="chat-handoff-ticket-activity")
        outbox_settled.connect(tasks.on_outbox_settled, dispatch_uid="chat-handoff-outbox-settled")
        # The learning loop (issue 20): knowledge lists the questions chat could not answer, through a
        # source chat registers (knowledge must not import chat).
        from apps.chat.learning import unanswered_messages
        from apps.knowledge.learning import register_question_source

        register_question_source(unanswered_messages)
        # Per-article quality (issue 21): knowledge counts citations and what followed them through a source.
        from apps.chat.insights import citation_stats
        from apps.knowledge.insights import register_quality_source

        register_quality_source(citation_stats)
        # Access reviews (issue 22): accounts lists channel API keys with the tenant's other credentials.
        from apps.accounts.selectors import register_token_source
        from apps.chat.access_review import api_key_rows

        register_token_source(api_key_rows)
