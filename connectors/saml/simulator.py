"""A real SAML 2.0 identity provider for tests and demos, on pysaml2's server side (`saml2.server.Server`).

It signs real assertions (RSA-SHA256 through xmlsec1) with a key pair generated at start, publishes its
metadata, takes AuthnRequests on HTTP-Redirect and answers with an auto-posting HTML form (HTTP-POST binding)
to the SP's registered ACS URL. Routes:

    GET  /idp/metadata            IdP metadata XML (entity id, SSO URL, signing certificate)
    GET  /idp/sso?SAMLRequest=..  the login form (e-mail, password, one-time code for MFA users)
    POST /idp/login               sign in: the auto-post form with the signed SAMLResponse

Admin (`POST /__admin/<action>`, JSON; mirrored by Python methods):
    user     {"email", "password", "groups", "given_name", "family_name", "mfa"}   add or replace a user
    sp       {"metadata"} or {"entity_id", "acs_url"}                            register a service provider
    rotate_key {}                                                                 new signing key pair
    attack   {"kind": one of ATTACKS or null}                                     arm the next answer
    respond  {"saml_request", "relay_state", "email", "mfa", "attack"}            answer without the form

Attacks (what a hostile or broken IdP/man-in-the-middle sends; every one must be refused by the SP):
unsigned, foreign_key (signed by another key, that key's certificate embedded), wrong_audience,
wrong_recipient (Destination and Recipient elsewhere), expired (NotOnOrAfter past), unsolicited (no
InResponseTo), xsw_sibling (an evil unsigned assertion before the signed one), xsw_wrap (the signed
assertion moved inside an evil one), xsw_object (evil assertion carrying the original's ID, the signed
original hidden in the Signature's Object), sha1 (signed with RSA-SHA1), response_signed_only (the
Response signed, the assertion not), nameid_comment (the user's signed NameID split by an XML comment, see
`_comment_split`).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import html
import secrets
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from connectors.simulation import SimRequest, SimResponse, Simulator, json_response

with warnings.catch_warnings():  # pysaml2 imports cryptography's decrepit ciphers (not used here)
    warnings.simplefilter("ignore")
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, xmldsig
    from saml2.config import IdPConfig
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
    from saml2.server import Server
    from saml2.sigver import pre_signature_part

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
ASSERTION = f"{{{NS['saml']}}}Assertion"
AC_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"  # noqa: S105 - a class ref
AC_MFA = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
ATTACKS = (
    "unsigned",
    "foreign_key",
    "wrong_audience",
    "wrong_recipient",
    "expired",
    "unsolicited",
    "xsw_sibling",
    "xsw_wrap",
    "xsw_object",
    "sha1",
    "response_signed_only",
    "nameid_comment",
)
DEMO_OTP = "123456"


@dataclass
class IdpUser:
    email: str
    password: str = "correct horse"  # noqa: S105 - the simulator's demo password
    groups: list[str] = field(default_factory=list)
    given_name: str = ""
    family_name: str = ""
    mfa: bool = False  # asks the one-time code (DEMO_OTP) and reports an MFA AuthnContextClassRef


@dataclass(frozen=True)
class KeyPair:
    key_file: Path
    cert_file: Path

    @property
    def cert_b64(self) -> str:
        pem = self.cert_file.read_text()
        return "".join(line for line in pem.splitlines() if "-----" not in line)


def key_pair_generate(directory: Path, name: str) -> KeyPair:
    """A fresh RSA-2048 key and a self-signed certificate (a year), as PEM files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"saml simulator {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.crt"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return KeyPair(key_file, cert_file)


def sp_metadata_minimal(entity_id: str, acs_url: str) -> str:
    return (
        f'<md:EntityDescriptor xmlns:md="{NS["md"]}" entityID="{html.escape(entity_id)}">'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{html.escape(acs_url)}" '
        'index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class SamlIdpSimulator(Simulator):
    vendor = "saml"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self.key_dir = self.state_dir / "saml" / secrets.token_hex(4)
        self.keys = key_pair_generate(self.key_dir, "idp")
        self.attacker_keys = key_pair_generate(self.key_dir, "attacker")
        self.users: dict[str, IdpUser] = {}
        self.sps: dict[str, dict[str, str]] = {}  # entity id -> {"acs_url", "metadata"}
        self.armed_attack: str | None = None
        self.issued: list[str] = []  # assertion ids, oldest first
        self._idp: Any = None
        self.route("GET", r"/idp/metadata", self._metadata)
        self.route("GET", r"/idp/sso", self._sso)
        self.route("POST", r"/idp/login", self._login)
        self.user_add(IdpUser(email="ada@acme.example", groups=["hub-admins"], given_name="Ada"))

    def is_public(self, request: SimRequest) -> bool:
        return True

    # --- configuration -----------------------------------------------------------------------

    @property
    def entity_id(self) -> str:
        return f"{self.base_url}/idp/metadata"

    @property
    def sso_url(self) -> str:
        return f"{self.base_url}/idp/sso"

    @property
    def metadata_url(self) -> str:
        return self.entity_id

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "entity_id": self.entity_id,
            "metadata_url": self.metadata_url,
            "users": sorted(self.users),
            "password": IdpUser.password,
            "otp": DEMO_OTP,
        }

    def _config(self, keys: KeyPair) -> IdPConfig:
        metadata = [sp["metadata"] for sp in self.sps.values()]
        return IdPConfig().load(
            {
                "entityid": self.entity_id,
                "service": {
                    "idp": {
                        "endpoints": {"single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]},
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 5},
                                "attribute_restrictions": None,
                                "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
                            }
                        },
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                        "want_authn_requests_signed": False,
                    }
                },
                "key_file": str(keys.key_file),
                "cert_file": str(keys.cert_file),
                "xmlsec_binary": "/usr/bin/xmlsec1",
                "metadata": {"inline": metadata} if metadata else {},
                "delete_tmpfiles": True,
            }
        )

    def server(self, keys: KeyPair | None = None) -> Any:
        """The pysaml2 IdP (rebuilt when SPs or keys change); `keys` for an attacker's twin."""
        with self._lock:
            if keys is not None:
                return Server(config=self._config(keys))
            if self._idp is None:
                self._idp = Server(config=self._config(self.keys))
            return self._idp

    def user_add(self, user: IdpUser) -> IdpUser:
        with self._lock:
            self.users[user.email.lower()] = user
        return user

    def sp_register(self, *, entity_id: str = "", acs_url: str = "", metadata: str = "") -> str:
        """Trust a service provider: from its metadata XML, or from its entity id and ACS URL."""
        if metadata:
            root = etree.fromstring(
                metadata.encode(), etree.XMLParser(resolve_entities=False, no_network=True)
            )
            entity_id = root.get("entityID", "")
            acs = root.find(".//md:AssertionConsumerService", NS)
            acs_url = acs.get("Location", "") if acs is not None else ""
        if not entity_id or not acs_url:
            raise ValueError("an SP needs an entity id and an ACS URL")
        with self._lock:
            self.sps[entity_id] = {"acs_url": acs_url, "metadata": sp_metadata_minimal(entity_id, acs_url)}
            self._idp = None
        return entity_id

    def rotate_key(self) -> None:
        """Sign with a new key pair from now on (the SP must re-read the metadata)."""
        with self._lock:
            self.keys = key_pair_generate(self.key_dir, f"idp-{secrets.token_hex(3)}")
            self._idp = None

    def arm(self, kind: str | None) -> None:
        if kind is not None and kind not in ATTACKS:
            raise ValueError(f"unknown attack {kind!r}; expected one of {ATTACKS}")
        self.armed_attack = kind

    def metadata_xml(self) -> str:
        from saml2.metadata import create_metadata_string

        return create_metadata_string(None, self.server().config, valid=None, sign=False).decode()

    # --- answering ---------------------------------------------------------------------------

    def respond(
        self,
        saml_request: str,
        *,
        email: str,
        relay_state: str = "",
        mfa: bool | None = None,
        attack: str = "",
    ) -> dict[str, str]:
        """Answer an AuthnRequest for `email` (no form): {"acs_url", "saml_response", "relay_state"}."""
        server = self.server()
        request = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT).message
        sp = self.sps.get(request.issuer.text if request.issuer is not None else "")
        if sp is None:
            raise ValueError("the AuthnRequest comes from an unregistered service provider")
        asked_acs = request.assertion_consumer_service_url
        if asked_acs and asked_acs != sp["acs_url"]:
            raise ValueError("the AuthnRequest asks for an ACS URL the service provider did not register")
        user = self.users.get(email.lower())
        if user is None:
            raise ValueError("unknown user")
        with_mfa = user.mfa if mfa is None else mfa
        with self._lock:  # an armed attack answers exactly one request
            attack, self.armed_attack = attack or self.armed_attack or "", None
        xml = self._response_xml(
            user=user, request_id=request.id, sp_entity_id=request.issuer.text, acs_url=sp["acs_url"],
            mfa=with_mfa, attack=attack,
        )  # fmt: skip
        return {
            "acs_url": sp["acs_url"],
            "saml_response": base64.b64encode(xml.encode()).decode(),
            "relay_state": relay_state,
        }

    def _response_xml(
        self, *, user: IdpUser, request_id: str, sp_entity_id: str, acs_url: str, mfa: bool, attack: str
    ) -> str:
        server = self.server()
        identity = {"mail": [user.email], "groups": list(user.groups)}
        if user.given_name:
            identity["givenName"] = [user.given_name]
        if user.family_name:
            identity["sn"] = [user.family_name]
        unsigned = server.create_authn_response(
            identity,
            request_id,
            acs_url,
            sp_entity_id,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=user.email),
            authn={"class_ref": AC_MFA if mfa else AC_PASSWORD, "authn_auth": self.entity_id},
            sign_assertion=False,
            sign_response=False,
        )
        root = etree.fromstring(str(unsigned).encode())
        assertion = root.find(ASSERTION)
        assert assertion is not None
        self._tamper_before_signing(root, attack)
        if attack == "unsigned":
            return etree.tostring(root, encoding="unicode")
        keys = self.attacker_keys if attack == "foreign_key" else self.keys
        signed = self._sign(root, keys, sha1=attack == "sha1", response=attack == "response_signed_only")
        if attack.startswith("xsw_"):
            signed = self._wrap(signed, attack)
        elif attack == "nameid_comment":
            signed = self._comment_split(signed)
        self.issued.append(assertion.get("ID", ""))
        return signed

    def _tamper_before_signing(self, root: Any, attack: str) -> None:
        assertion = root.find(ASSERTION)
        scd = assertion.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
        conditions = assertion.find("saml:Conditions", NS)
        if attack == "wrong_audience":
            assertion.find(".//saml:Audience", NS).text = "https://elsewhere.example/saml/metadata"
        elif attack == "wrong_recipient":
            elsewhere = "https://elsewhere.example/saml/acs"
            root.set("Destination", elsewhere)
            scd.set("Recipient", elsewhere)
        elif attack == "expired":
            past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
            conditions.set("NotBefore", _iso(past - dt.timedelta(minutes=5)))
            conditions.set("NotOnOrAfter", _iso(past))
            scd.set("NotOnOrAfter", _iso(past))
        elif attack == "unsolicited":
            root.attrib.pop("InResponseTo", None)
            scd.attrib.pop("InResponseTo", None)

    def _sign(self, root: Any, keys: KeyPair, *, sha1: bool = False, response: bool = False) -> str:
        """Sign the assertion (or, `response`, only the Response) with `keys` through xmlsec1: an
        enveloped signature right after the element's Issuer."""
        element = root if response else root.find(ASSERTION)
        template = pre_signature_part(
            ident=element.get("ID"),
            public_key=keys.cert_b64,
            sign_alg=xmldsig.SIG_RSA_SHA1 if sha1 else xmldsig.SIG_RSA_SHA256,
            digest_alg=xmldsig.DIGEST_SHA1 if sha1 else xmldsig.DIGEST_SHA256,
        )
        element.insert(1, etree.fromstring(str(template).encode()))
        xml = etree.tostring(root, encoding="unicode")
        server = self.server() if keys == self.keys else self.server(keys)
        node = f"{NS['samlp']}:Response" if response else f"{NS['saml']}:Assertion"
        return str(
            server.sec.sign_statement(
                xml, node_name=node, key_file=str(keys.key_file), node_id=element.get("ID")
            )
        )

    @staticmethod
    def _comment_split(signed: str) -> str:
        """Split the NameID and mail values with an XML comment after the domain's second label
        ("ada@acme.example<!---->.evil.com"): the signature (comments excluded) still verifies, and an SP
        reading only the first text node would see someone else (CVE-2017-11427 and kin)."""
        root = etree.fromstring(signed.encode())
        targets = [root.find(f"{ASSERTION}/saml:Subject/saml:NameID", NS)]
        targets += root.findall(f"{ASSERTION}/saml:AttributeStatement/saml:Attribute/saml:AttributeValue", NS)
        for element in targets:
            text = element.text or ""
            local, _, domain = text.partition("@")
            labels = domain.split(".")
            if not local or len(labels) < 3:
                continue
            element.text = f"{local}@{'.'.join(labels[:2])}"
            comment = etree.Comment("")
            comment.tail = "." + ".".join(labels[2:])
            element.append(comment)
        return etree.tostring(root, encoding="unicode")

    @staticmethod
    def _wrap(signed: str, attack: str) -> str:
        """Classic XML signature wrapping: an evil assertion next to, around or instead of the signed one."""
        root = etree.fromstring(signed.encode())
        original = root.find(ASSERTION)
        evil = copy.deepcopy(original)
        for signature in evil.findall("ds:Signature", NS):
            evil.remove(signature)
        evil.find("saml:Subject/saml:NameID", NS).text = "mallory@evil.example"
        for value in evil.findall(".//saml:Attribute[@Name='groups']/saml:AttributeValue", NS):
            value.text = "hub-admins"
        if attack == "xsw_sibling":  # evil first, the signed one after it (XSW3)
            evil.set("ID", "_evil" + secrets.token_hex(8))
            original.addprevious(evil)
        elif attack == "xsw_wrap":  # the signed one inside the evil one (XSW4)
            evil.set("ID", "_evil" + secrets.token_hex(8))
            root.replace(original, evil)
            evil.append(original)
        else:  # xsw_object: evil carries the original's ID, the original hides in ds:Object (XSW8)
            signature = copy.deepcopy(original.find("ds:Signature", NS))
            root.replace(original, evil)
            etree.SubElement(signature, f"{{{NS['ds']}}}Object").append(original)
            evil.insert(1, signature)
        return etree.tostring(root, encoding="unicode")

    # --- HTTP --------------------------------------------------------------------------------

    def _metadata(self, request: SimRequest) -> SimResponse:
        return SimResponse(200, self.metadata_xml().encode(), "application/samlmetadata+xml")

    def _page(self, title: str, body: str, status: int = 200) -> SimResponse:
        page = (
            f"<!doctype html><html><head><title>{html.escape(title)}</title></head><body>{body}</body></html>"
        )
        return SimResponse(status, page.encode(), "text/html; charset=utf-8")

    def _sso(self, request: SimRequest) -> SimResponse:
        saml_request = request.query.get("SAMLRequest", "")
        if not saml_request:
            return self._page("Error", "<p>No SAMLRequest.</p>", 400)
        fields = "".join(
            f'<input type="hidden" name="{n}" value="{html.escape(v)}">'
            for n, v in (("SAMLRequest", saml_request), ("RelayState", request.query.get("RelayState", "")))
        )
        form = (
            '<h1>Simulated IdP</h1><form method="post" action="/idp/login">'
            '<label>E-mail <input name="email" type="email"></label>'
            '<label>Password <input name="password" type="password"></label>'
            '<label>One-time code <input name="otp" autocomplete="one-time-code"></label>'
            f'{fields}<button type="submit">Sign in</button></form>'
        )
        return self._page("Sign in", form)

    def _login(self, request: SimRequest) -> SimResponse:
        form = request.form()
        user = self.users.get(form.get("email", "").lower())
        if user is None or not secrets.compare_digest(user.password, form.get("password", "")):
            return self._page("Sign in", "<p>Wrong e-mail or password.</p>", 401)
        if user.mfa and form.get("otp") != DEMO_OTP:
            return self._page("Sign in", "<p>Wrong one-time code.</p>", 401)
        try:
            answer = self.respond(
                form.get("SAMLRequest", ""), email=user.email, relay_state=form.get("RelayState", "")
            )
        except Exception:
            return self._page("Error", "<p>The sign-in request was refused.</p>", 400)
        return self._page("Signing in", auto_post_form(answer))

    def admin(self, request: SimRequest) -> SimResponse:
        action = request.path.removeprefix("/__admin/")
        body = request.json() if request.body else {}
        try:
            if action == "user" and request.method == "POST":
                self.user_add(IdpUser(**body))
                return json_response(200, {"ok": True})
            if action == "sp" and request.method == "POST":
                return json_response(200, {"entity_id": self.sp_register(**body)})
            if action == "rotate_key" and request.method == "POST":
                self.rotate_key()
                return json_response(200, {"ok": True})
            if action == "attack" and request.method == "POST":
                self.arm(body.get("kind"))
                return json_response(200, {"ok": True})
            if action == "respond" and request.method == "POST":
                answer = self.respond(
                    body["saml_request"],
                    email=body["email"],
                    relay_state=body.get("relay_state", ""),
                    mfa=body.get("mfa"),
                    attack=body.get("attack", ""),
                )
                return json_response(200, answer)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response(400, {"error": str(exc)})
        return super().admin(request)


def auto_post_form(answer: dict[str, str]) -> str:
    """The HTTP-POST binding: a form that posts SAMLResponse and RelayState to the ACS on load."""
    return (
        f'<form id="saml" method="post" action="{html.escape(answer["acs_url"])}">'
        f'<input type="hidden" name="SAMLResponse" value="{html.escape(answer["saml_response"])}">'
        f'<input type="hidden" name="RelayState" value="{html.escape(answer["relay_state"])}">'
        '<noscript><button type="submit">Continue</button></noscript></form>'
        "<script>document.getElementById('saml').submit()</script>"
    )
