from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "apps.knowledge"
    label = "knowledge"

    def ready(self) -> None:
        # A malformed HUB_EMBEDDING_PROVIDER must stop start-up, not surface on the first search.
        from apps.knowledge.embeddings import provider_class

        provider_class()
        # The tasks are queued by name (apps/knowledge/dispatch.py): register them in every process.
        from apps.knowledge import tasks  # noqa: F401
