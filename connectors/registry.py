"""Kind → connector class, loaded from dotted paths (a settings list) and checked against the base class."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module

from connectors.base import Connector
from connectors.errors import InvalidConfig, UnknownConnectorKind

DEFAULT_CONNECTORS: tuple[str, ...] = (
    "connectors.salesforce.connector.SalesforceConnector",
    "connectors.hubspot.connector.HubSpotConnector",
    "connectors.servicenow.connector.ServiceNowConnector",
    "connectors.sap.connector.SapConnector",
    "connectors.dynamics.connector.DynamicsConnector",
    "connectors.sap_odata.connector.SapODataConnector",
    # Chat channels' platform accounts: write-only "messages" (connectors/messaging_connector.py).
    "connectors.messaging_connector.WhatsAppConnector",
    "connectors.messaging_connector.SlackConnector",
    "connectors.messaging_connector.TeamsConnector",
    "connectors.messaging_connector.TwilioSmsConnector",
)


def import_connector(path: str) -> type[Connector]:
    """Import one dotted path; anything but a concrete Connector subclass is a configuration error."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise InvalidConfig(f"Connector path '{path}' is not a dotted path")
    try:
        obj = getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidConfig(f"Cannot import connector '{path}': {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Connector)) or obj is Connector:
        raise InvalidConfig(f"'{path}' is not a subclass of connectors.base.Connector")
    if not getattr(obj, "kind", None):
        raise InvalidConfig(f"'{path}' does not declare a kind")
    return obj


def load_registry(paths: Iterable[str] = DEFAULT_CONNECTORS) -> dict[str, type[Connector]]:
    """Build the registry; two classes claiming the same kind is an error, not a silent override."""
    registry: dict[str, type[Connector]] = {}
    for path in paths:
        cls = import_connector(path)
        if cls.kind in registry:
            raise InvalidConfig(f"Connector kind '{cls.kind}' registered twice ({path})")
        registry[cls.kind] = cls
    return registry


def get_connector_class(kind: str, *, registry: dict[str, type[Connector]] | None = None) -> type[Connector]:
    registry = registry if registry is not None else load_registry()
    try:
        return registry[kind]
    except KeyError:
        known = ", ".join(sorted(registry)) or "none"
        raise UnknownConnectorKind(f"Unknown connector kind '{kind}' (known: {known})") from None
