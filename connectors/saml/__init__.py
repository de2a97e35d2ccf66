"""SAML 2.0 Web SSO: the service provider (`sp`, python3-saml) and a real IdP simulator (`simulator`)."""

from connectors.saml.sp import (
    MAX_RESPONSE_BYTES,
    SamlAssertion,
    SamlError,
    SamlReason,
    ServiceProvider,
    idp_metadata_parse,
)

__all__ = [
    "MAX_RESPONSE_BYTES",
    "SamlAssertion",
    "SamlError",
    "SamlReason",
    "ServiceProvider",
    "idp_metadata_parse",
]
