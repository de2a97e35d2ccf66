from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "apps.policies"
    label = "policies"

    def ready(self) -> None:
        # Register this app's own retention and erasure handlers (audit events, the vault). Apps added later
        # (conversations, synced records, sync logs, outbox) register theirs in their own ready().
        # The tasks too, in every process: services queue the archive build by name (dsr.py).
        from apps.policies import handlers, tasks  # noqa: F401
