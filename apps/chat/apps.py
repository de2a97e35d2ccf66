from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "apps.chat"
    label = "chat"

    def ready(self) -> None:
        from apps.chat import retention
        from apps.policies.models import Category
        from apps.policies.registry import register_eraser, register_purger

        register_purger(Category.TRANSCRIPTS, retention.purge_transcripts)
        register_eraser("transcripts", retention.erase_transcripts)
