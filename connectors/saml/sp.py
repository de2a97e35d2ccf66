"""The SAML 2.0 service provider: AuthnRequest out (HTTP-Redirect), Response in (HTTP-POST), SP metadata.

Built on python3-saml (OneLogin) in strict mode, which checks the XML schema, the signature (xmlsec wheel,
the configured IdP certificate only: a certificate inside the message is never trusted), the signed-element
layout that defeats XML signature wrapping, Destination, Recipient, Audience, Issuer, NotBefore/NotOnOrAfter.
On top we require: a signed assertion always; an answer to OUR request (InResponseTo equal to the request id
we kept: unsolicited, IdP-initiated responses are refused); Destination and every bearer Recipient equal to
this provider's ACS URL (python3-saml only checks a prefix/substring); no SHA-1 unless allowed; no DTD or
entity anywhere (defusedxml, before python3-saml sees the bytes). Replay (assertion id seen before) is the
caller's job: it needs shared storage (`SamlAssertion.assertion_id`, `.not_on_or_after`).

Errors are `SamlError` with a `SamlReason`; their text never carries message content (no e-mail, no XML).
"""

from __future__ import annotations

import base64
import binascii
import enum
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as V
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings

#: A real Response with a few dozen attributes is 10-30 KB; anything much bigger is refused unread.
MAX_RESPONSE_BYTES = 256 * 1024
MAX_METADATA_BYTES = 1024 * 1024
#: Replay records outlive the assertion's NotOnOrAfter by python3-saml's allowed clock drift.
CLOCK_SKEW_SECONDS = int(C.ALLOWED_CLOCK_DRIFT)

NAMEID_EMAIL = C.NAMEID_EMAIL_ADDRESS
#: Where IdPs put the e-mail address when the NameID is not one (Okta/Keycloak, Entra ID, eduPerson, LDAP).
EMAIL_ATTRIBUTES = (
    "email",
    "mail",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "urn:mace:dir:attribute-def:mail",
)
GIVEN_NAME_ATTRIBUTES = (
    "firstName",
    "givenName",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    "urn:oid:2.5.4.42",
)
FAMILY_NAME_ATTRIBUTES = (
    "lastName",
    "sn",
    "surname",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    "urn:oid:2.5.4.4",
)


class SamlReason(enum.Enum):
    """Why a SAML answer was refused (audit reference and metric label; never shown with details)."""

    BAD_SIGNATURE = "bad_signature"
    UNSIGNED = "unsigned"
    SIGNATURE_WRAPPING = "signature_wrapping"
    WEAK_ALGORITHM = "weak_algorithm"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_RECIPIENT = "wrong_recipient"
    WRONG_ISSUER = "wrong_issuer"
    EXPIRED = "expired"
    UNSOLICITED = "unsolicited"
    REPLAYED = "replayed"
    IDP_REFUSED = "idp_refused"
    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    METADATA = "metadata"


class SamlError(Exception):
    """A SAML message or metadata was refused; `str()` is a fixed, content-free sentence."""

    def __init__(self, reason: SamlReason, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or f"SAML refused: {reason.value}")


_CODE_REASONS: dict[int, SamlReason] = {
    V.INVALID_SIGNATURE: SamlReason.BAD_SIGNATURE,
    V.NO_SIGNATURE_FOUND: SamlReason.UNSIGNED,
    V.NO_SIGNED_ASSERTION: SamlReason.UNSIGNED,
    V.NO_SIGNED_MESSAGE: SamlReason.UNSIGNED,
    V.WRONG_NUMBER_OF_ASSERTIONS: SamlReason.SIGNATURE_WRAPPING,
    V.WRONG_SIGNED_ELEMENT: SamlReason.SIGNATURE_WRAPPING,
    V.ID_NOT_FOUND_IN_SIGNED_ELEMENT: SamlReason.SIGNATURE_WRAPPING,
    V.DUPLICATED_ID_IN_SIGNED_ELEMENTS: SamlReason.SIGNATURE_WRAPPING,
    V.INVALID_SIGNED_ELEMENT: SamlReason.SIGNATURE_WRAPPING,
    V.DUPLICATED_REFERENCE_IN_SIGNED_ELEMENTS: SamlReason.SIGNATURE_WRAPPING,
    V.UNEXPECTED_SIGNED_ELEMENTS: SamlReason.SIGNATURE_WRAPPING,
    V.WRONG_NUMBER_OF_SIGNATURES_IN_RESPONSE: SamlReason.SIGNATURE_WRAPPING,
    V.WRONG_NUMBER_OF_SIGNATURES_IN_ASSERTION: SamlReason.SIGNATURE_WRAPPING,
    V.WRONG_NUMBER_OF_SIGNATURES: SamlReason.SIGNATURE_WRAPPING,
    V.DEPRECATED_SIGNATURE_METHOD: SamlReason.WEAK_ALGORITHM,
    V.DEPRECATED_DIGEST_METHOD: SamlReason.WEAK_ALGORITHM,
    V.WRONG_AUDIENCE: SamlReason.WRONG_AUDIENCE,
    V.WRONG_DESTINATION: SamlReason.WRONG_RECIPIENT,
    V.EMPTY_DESTINATION: SamlReason.WRONG_RECIPIENT,
    V.WRONG_SUBJECTCONFIRMATION: SamlReason.WRONG_RECIPIENT,
    V.WRONG_ISSUER: SamlReason.WRONG_ISSUER,
    V.ISSUER_MULTIPLE_IN_RESPONSE: SamlReason.WRONG_ISSUER,
    V.ISSUER_NOT_FOUND_IN_ASSERTION: SamlReason.WRONG_ISSUER,
    V.ASSERTION_EXPIRED: SamlReason.EXPIRED,
    V.ASSERTION_TOO_EARLY: SamlReason.EXPIRED,
    V.SESSION_EXPIRED: SamlReason.EXPIRED,
    V.RESPONSE_EXPIRED: SamlReason.EXPIRED,
    V.WRONG_INRESPONSETO: SamlReason.UNSOLICITED,
    V.STATUS_CODE_IS_NOT_SUCCESS: SamlReason.IDP_REFUSED,
}


@dataclass(frozen=True)
class SamlAssertion:
    """What a verified Response says (attribute names as the IdP sent them, values as lists)."""

    name_id: str
    name_id_format: str
    session_index: str
    attributes: dict[str, list[str]]
    authn_context_class_refs: tuple[str, ...]
    assertion_id: str
    not_on_or_after: float  # epoch seconds: until when a replay must be refused
    issuer: str
    friendly_attributes: dict[str, list[str]] = field(default_factory=dict)

    def first(self, names: tuple[str, ...]) -> str:
        """The first value of the first of `names` present (by Name, then by FriendlyName)."""
        for source in (self.attributes, self.friendly_attributes):
            for name in names:
                values = [v for v in source.get(name, []) if v]
                if values:
                    return str(values[0])
        return ""

    @property
    def email(self) -> str:
        """The e-mail address: the NameID when its format says so, else the usual attributes."""
        if self.name_id_format == NAMEID_EMAIL and "@" in self.name_id:
            return self.name_id
        return self.first(EMAIL_ATTRIBUTES)

    def values(self, name: str) -> tuple[str, ...]:
        return tuple(
            str(v) for v in self.attributes.get(name) or self.friendly_attributes.get(name) or [] if v
        )


def _refuse_dtd(xml: bytes | str) -> None:
    """Refuse DTDs, entities and external references before any other parser sees the document."""
    try:
        defused_fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise SamlError(SamlReason.MALFORMED, "SAML document with a DTD or entity refused") from None
    except Exception:
        raise SamlError(SamlReason.MALFORMED, "SAML document is not well-formed XML") from None


def idp_metadata_parse(xml: str) -> dict[str, Any]:
    """Read the IdP's entity id, HTTP-Redirect SSO URL and signing certificate(s) from its metadata."""
    if len(xml.encode()) > MAX_METADATA_BYTES:
        raise SamlError(SamlReason.METADATA, "IdP metadata is too large")
    _refuse_dtd(xml.encode())
    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml, required_sso_binding=C.BINDING_HTTP_REDIRECT)
    except Exception:
        raise SamlError(SamlReason.METADATA, "IdP metadata could not be read") from None
    idp = parsed.get("idp") or {}
    certs = idp.get("x509cert") or (idp.get("x509certMulti") or {}).get("signing")
    if not idp.get("entityId") or not (idp.get("singleSignOnService") or {}).get("url") or not certs:
        raise SamlError(
            SamlReason.METADATA,
            "IdP metadata lacks an entity id, an HTTP-Redirect sign-on URL or a signing certificate",
        )
    return dict(idp)


class ServiceProvider:
    """One SP (our side of one identity provider): entity id, ACS URL and the IdP it trusts."""

    def __init__(
        self,
        *,
        entity_id: str,
        acs_url: str,
        idp_metadata_xml: str = "",
        want_messages_signed: bool = False,
        allow_sha1: bool = False,
    ) -> None:
        self.entity_id = entity_id
        self.acs_url = acs_url
        # Without IdP metadata only `metadata()` works (the IdP admin needs ours before we have theirs).
        self.idp = idp_metadata_parse(idp_metadata_xml) if idp_metadata_xml else {}
        self.settings = OneLogin_Saml2_Settings(
            {
                "strict": True,
                "debug": False,
                "sp": {
                    "entityId": entity_id,
                    "assertionConsumerService": {"url": acs_url, "binding": C.BINDING_HTTP_POST},
                    "NameIDFormat": C.NAMEID_UNSPECIFIED,
                },
                "idp": self.idp or {"entityId": "", "singleSignOnService": {"url": ""}},
                "security": {
                    "authnRequestsSigned": False,
                    "wantAssertionsSigned": True,
                    "wantMessagesSigned": want_messages_signed,
                    "wantNameId": True,
                    "wantAttributeStatement": False,
                    "requestedAuthnContext": False,  # the IdP decides; MFA shows in AuthnContextClassRef
                    "rejectUnsolicitedResponsesWithInResponseTo": True,
                    "rejectDeprecatedAlgorithm": not allow_sha1,
                    "allowRepeatAttributeName": False,
                    "signatureAlgorithm": C.RSA_SHA256,
                    "digestAlgorithm": C.SHA256,
                },
            },
            sp_validation_only=True,
        )

    @property
    def idp_entity_id(self) -> str:
        return str(self.idp.get("entityId", ""))

    def _need_idp(self) -> None:
        if not self.idp:
            raise SamlError(SamlReason.METADATA, "no IdP metadata configured")

    def authn_request(self, relay_state: str) -> tuple[str, str]:
        """(URL to send the browser to, the request id to keep until the answer comes back)."""
        self._need_idp()
        request = OneLogin_Saml2_Authn_Request(self.settings)
        sso_url = str(self.idp["singleSignOnService"]["url"])
        query = urlencode({"SAMLRequest": request.get_request(), "RelayState": relay_state})
        return f"{sso_url}{'&' if '?' in sso_url else '?'}{query}", str(request.get_id())

    def metadata(self) -> str:
        """This SP's metadata XML (entity id, ACS URL, HTTP-POST), for the IdP administrator."""
        xml = self.settings.get_sp_metadata()
        return xml.decode() if isinstance(xml, bytes) else str(xml)

    def _request_data(self) -> dict[str, Any]:
        """python3-saml compares Destination/Recipient with "the current URL": make it our ACS URL."""
        parts = urlsplit(self.acs_url)
        return {
            "https": "on" if parts.scheme == "https" else "off",
            "http_host": parts.netloc,
            "script_name": parts.path,
            "get_data": {},
            "post_data": {},
        }

    def process_response(self, saml_response: str, *, request_id: str) -> SamlAssertion:
        """Verify a base64 SAMLResponse answering our request `request_id`; raise SamlError otherwise."""
        self._need_idp()
        if len(saml_response) > MAX_RESPONSE_BYTES * 4 // 3 + 4:
            raise SamlError(SamlReason.OVERSIZE, "SAML response is too large")
        try:
            raw = base64.b64decode(saml_response.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise SamlError(SamlReason.MALFORMED, "SAML response is not base64") from None
        _refuse_dtd(raw)
        try:
            response = OneLogin_Saml2_Response(self.settings, saml_response)
            response.is_valid(self._request_data(), request_id=request_id, raise_exceptions=True)
        except V as exc:
            raise SamlError(_CODE_REASONS.get(exc.code, SamlReason.MALFORMED)) from None
        except Exception:
            raise SamlError(SamlReason.MALFORMED) from None
        try:
            return self._assertion(response, request_id=request_id)
        except SamlError:
            raise
        except Exception:
            raise SamlError(SamlReason.MALFORMED) from None

    def _assertion(self, response: OneLogin_Saml2_Response, *, request_id: str) -> SamlAssertion:
        if response.get_in_response_to() != request_id:
            raise SamlError(SamlReason.UNSOLICITED)
        document = response.document
        destination = document.get("Destination")
        if destination is not None and destination != self.acs_url:
            raise SamlError(SamlReason.WRONG_RECIPIENT)
        for recipient in response._query_assertion(
            "/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData/@Recipient"
        ):
            if str(recipient) != self.acs_url:
                raise SamlError(SamlReason.WRONG_RECIPIENT)
        issuers = response.get_issuers()
        scd_expiry = response.get_assertion_not_on_or_after()
        conditions = response._query_assertion("/saml:Conditions/@NotOnOrAfter")
        expiries = [float(scd_expiry)] if scd_expiry else []
        if conditions:
            from onelogin.saml2.utils import OneLogin_Saml2_Utils

            expiries.append(float(OneLogin_Saml2_Utils.parse_SAML_to_time(str(conditions[0]))))
        nameid = response.get_nameid_data()
        return SamlAssertion(
            name_id=str(nameid.get("Value") or ""),
            name_id_format=str(nameid.get("Format") or ""),
            session_index=str(response.get_session_index() or ""),
            attributes={k: [str(v) for v in vs] for k, vs in response.get_attributes().items()},
            friendly_attributes={
                k: [str(v) for v in vs] for k, vs in response.get_friendlyname_attributes().items()
            },
            authn_context_class_refs=tuple(str(c) for c in response.get_authn_contexts()),
            assertion_id=str(response.get_assertion_id()),
            not_on_or_after=max(expiries) if expiries else time.time() + 300,
            issuer=str(issuers[0]) if issuers else "",
        )
