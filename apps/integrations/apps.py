from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "apps.integrations"
    label = "integrations"

    def ready(self) -> None:
        # A malformed HUB_CONNECTORS entry must stop start-up, not surface on the first console click.
        from apps.integrations.conf import connector_registry

        connector_registry()
