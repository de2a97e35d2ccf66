from django.apps import AppConfig


class HelpCenterConfig(AppConfig):
    name = "apps.helpcenter"
    label = "helpcenter"

    def ready(self) -> None:
        # Citations of a knowledge base with a help center link there (knowledge must not import us).
        from apps.helpcenter.selectors import public_bases
        from apps.knowledge.selectors import register_public_bases

        register_public_bases(public_bases)
