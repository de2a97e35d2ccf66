"""Writes of a tenant's single sign-on configuration: identity providers, e-mail domains and their DNS
verification, group → role mappings, SSO enforcement and the operator's break-glass admin.

Every change is validated here (console forms and the management API share the rules) and audited with the
OIDC client secret censored. The sign-in itself is `services.sso`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver
import idna
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.accounts.services.sso import idp_session
from apps.audit.services import audit_record
from apps.core.errors import Conflict, HubError, ValidationFailed
from apps.tenants.models import Membership, Region, Role, Tenant, locale_validator
from connectors.errors import ConnectorError
from connectors.http import HttpSession, safe_url, url_origin

SENSITIVE = ("oidc_client_secret",)
PROVIDER_FIELDS = (
    "name",
    "protocol",
    "is_active",
    "oidc_discovery_url",
    "oidc_client_id",
    "oidc_scopes",
    "saml_metadata_url",
    "saml_metadata_xml",
    "groups_claim",
    "default_role",
    "accept_idp_mfa",
    "mfa_values",
)
#: Suffixes under which anyone can register a name: claiming one would route a whole registry's users.
PUBLIC_SUFFIXES = frozenset(
    {
        "ac.jp", "ac.uk", "co.in", "co.jp", "co.kr", "co.nz", "co.uk", "co.za", "com.ar", "com.au",
        "com.br", "com.cn", "com.mx", "com.sg", "com.tr", "com.tw", "gov.uk", "ltd.uk", "me.uk", "ne.jp",
        "net.au", "or.jp", "org.au", "org.uk", "plc.uk", "blogspot.com", "github.io", "herokuapp.com",
        "appspot.com", "azurewebsites.net", "cloudfront.net", "pages.dev", "netlify.app", "vercel.app",
    }
)  # fmt: skip
CHALLENGE_PREFIX = "_hub-challenge"
MAX_MAPPINGS = 500
MAX_DOCUMENT = 1_000_000  # bytes of a discovery document or IdP metadata we read


class Forbidden(HubError):
    """The actor may not make this change (e.g. break-glass and hand verification: operators only)."""


def _is_operator(actor: Any) -> bool:
    return bool(actor is not None and actor.is_authenticated and actor.is_staff and actor.is_active)


# --- identity providers ------------------------------------------------------------------------------------
def saml_metadata_parse(xml: str) -> dict[str, Any]:
    """Parse IdP metadata with python3-saml; raise ValidationFailed unless it names an entity, a
    sign-on URL and a signing certificate (we require signed assertions)."""
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

    message = _("This is not SAML 2.0 identity provider metadata.")
    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml.encode() if isinstance(xml, str) else xml)
    except Exception:  # lxml, defusedxml and the parser's own errors: all mean "not metadata"
        raise ValidationFailed(message, {"saml_metadata_xml": [message]}) from None
    idp = parsed.get("idp") or {}
    certs = idp.get("x509certMulti", {}).get("signing") or ([idp["x509cert"]] if idp.get("x509cert") else [])
    if not idp.get("entityId") or not idp.get("singleSignOnService", {}).get("url"):
        missing = _("The metadata names no IdP entity ID or single sign-on URL.")
        raise ValidationFailed(missing, {"saml_metadata_xml": [missing]})
    if not certs:
        missing = _("The metadata has no signing certificate; signed assertions are required.")
        raise ValidationFailed(missing, {"saml_metadata_xml": [missing]})
    return dict(parsed)


def _url(value: Any, field: str, errors: dict[str, list[str]]) -> str:
    url = str(value or "").strip()
    if not url:
        return ""
    try:
        URLValidator(schemes=["https", "http"])(url)
    except ValidationError:
        errors[field] = [_("Enter a valid URL.")]
        return url
    if len(url) > 500:
        errors[field] = [_("Use at most 500 characters.")]
    elif settings.HUB_OUTBOUND_REQUIRE_HTTPS and not url.lower().startswith("https://"):
        errors[field] = [_("Use an https:// address.")]
    return url


def _strings(value: Any, field: str, errors: dict[str, list[str]], *, limit: int = 200) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace(",", "\n").split()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        errors[field] = [_("Give a list of values.")]
        return []
    clean = list(dict.fromkeys(v.strip() for v in value if v.strip()))
    if len(clean) > 50 or any(len(v) > limit for v in clean):
        errors[field] = [_("Use at most 50 values of at most %(limit)s characters.") % {"limit": limit}]
    return clean


def _validate_provider(
    *, tenant: Tenant, data: Mapping[str, Any], provider: IdentityProvider | None
) -> dict[str, Any]:
    """Check a whole provider (PROVIDER_FIELDS + oidc_client_secret); raise ValidationFailed."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    name = str(data.get("name") or "").strip()
    if not name:
        errors["name"] = [_("This field is required.")]
    elif len(name) > 100:
        errors["name"] = [_("Use at most 100 characters.")]
    elif (
        IdentityProvider.objects.filter(tenant=tenant, name=name)
        .exclude(pk=provider.pk if provider and provider.pk else 0)
        .exists()
    ):
        errors["name"] = [_("This tenant already has an identity provider with this name.")]
    clean["name"] = name
    protocol = provider.protocol if provider else data.get("protocol")
    if protocol not in IdentityProvider.Protocol.values:
        errors["protocol"] = [_("Choose OpenID Connect or SAML 2.0.")]
    clean["protocol"] = protocol
    clean["is_active"] = bool(data.get("is_active", True))
    clean["oidc_discovery_url"] = _url(data.get("oidc_discovery_url"), "oidc_discovery_url", errors)
    clean["oidc_client_id"] = str(data.get("oidc_client_id") or "").strip()[:255]
    scopes = " ".join(str(data.get("oidc_scopes") or "openid email profile").split())
    if "openid" not in scopes.split():
        scopes = f"openid {scopes}"
    clean["oidc_scopes"] = scopes[:255]
    clean["saml_metadata_url"] = _url(data.get("saml_metadata_url"), "saml_metadata_url", errors)
    clean["saml_metadata_xml"] = str(data.get("saml_metadata_xml") or "").strip()
    secret = data.get("oidc_client_secret")
    secret = str(secret).strip() if secret else ""
    if protocol == IdentityProvider.Protocol.OIDC:
        if not clean["oidc_discovery_url"] and "oidc_discovery_url" not in errors:
            errors["oidc_discovery_url"] = [_("This field is required.")]
        if not clean["oidc_client_id"]:
            errors["oidc_client_id"] = [_("This field is required.")]
        has_secret = bool(secret) or (provider is not None and provider.oidc_client_secret is not None)
        moved = provider is not None and url_origin(provider.oidc_discovery_url) != url_origin(
            clean["oidc_discovery_url"]
        )
        if not has_secret:
            errors["oidc_client_secret"] = [_("This field is required.")]
        elif moved and not secret and provider is not None and provider.oidc_client_secret is not None:
            # The secret is bound to the IdP it was entered for: never send it to a new host unasked.
            errors["oidc_client_secret"] = [
                _("The discovery URL points to another host now: enter the client secret again.")
            ]
        elif len(secret) > 1000:
            errors["oidc_client_secret"] = [_("Use at most 1000 characters.")]
    elif protocol == IdentityProvider.Protocol.SAML:
        if not clean["saml_metadata_url"] and not clean["saml_metadata_xml"]:
            errors.setdefault("saml_metadata_url", [_("Give the metadata URL or paste the metadata XML.")])
        if clean["saml_metadata_xml"]:
            if len(clean["saml_metadata_xml"]) > 200_000:
                errors["saml_metadata_xml"] = [_("The metadata is too large.")]
            else:
                try:
                    saml_metadata_parse(clean["saml_metadata_xml"])
                except ValidationFailed as exc:
                    errors.update(exc.errors)
    # "" = keep the stored one; SAML providers have none
    clean["oidc_client_secret"] = secret if protocol == IdentityProvider.Protocol.OIDC else ""
    groups_claim = str(data.get("groups_claim") or "groups").strip()
    if len(groups_claim) > 200:
        errors["groups_claim"] = [_("Use at most 200 characters.")]
    clean["groups_claim"] = groups_claim
    default_role = str(data.get("default_role") or "")
    if default_role and default_role not in Role.values:
        errors["default_role"] = [_("Choose a valid role.")]
    clean["default_role"] = default_role
    clean["accept_idp_mfa"] = bool(data.get("accept_idp_mfa", False))
    clean["mfa_values"] = _strings(data.get("mfa_values"), "mfa_values", errors)
    if errors:
        raise ValidationFailed(_("Please correct the errors below."), errors)
    return clean


def _still_enforceable(
    tenant: Tenant, *, without_provider: int | None = None, without_domain: int | None = None
) -> bool:
    """Whether an active IdP with a verified domain remains if the given provider or domain went away."""
    domains = SsoDomain.objects.filter(
        tenant=tenant, verified_at__isnull=False, identity_provider__is_active=True
    )
    if without_provider is not None:
        domains = domains.exclude(identity_provider_id=without_provider)
    if without_domain is not None:
        domains = domains.exclude(pk=without_domain)
    return domains.exists()


def _enforced_guard(tenant: Tenant, **without: int) -> None:
    tenant.refresh_from_db(fields=["sso_enforced"])
    if tenant.sso_enforced and not _still_enforceable(tenant, **without):
        raise Conflict(
            _(
                "Single sign-on is enforced and this is the last active identity provider with a verified "
                "domain: switch enforcement off first, or members could not sign in."
            )
        )


def _provider_audit_view(values: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit trail keeps of provider fields: the metadata XML by size, never the secret."""
    view = dict(values)
    if "saml_metadata_xml" in view:
        view["saml_metadata_xml"] = f"{len(view['saml_metadata_xml'] or '')} characters"
    return view


def provider_create(
    *, tenant: Tenant, data: Mapping[str, Any], actor: Any, request: HttpRequest | None = None
) -> IdentityProvider:
    """Add an identity provider to `tenant`; the OIDC client secret is sealed, never kept in the clear."""
    clean = _validate_provider(tenant=tenant, data=data, provider=None)
    secret = clean.pop("oidc_client_secret")
    provider = IdentityProvider(tenant=tenant, **clean)
    if secret and provider.protocol == IdentityProvider.Protocol.OIDC:
        provider.oidc_client_secret = secret.encode()
    try:
        provider.save()
    except IntegrityError:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"name": [_("This tenant already has an identity provider with this name.")]},
        ) from None
    changes = _provider_audit_view({k: clean[k] for k in PROVIDER_FIELDS})
    if secret:
        changes["oidc_client_secret"] = "set"  # noqa: S105 (a marker; censored anyway)
    audit_record(
        "sso.provider_created",
        tenant=tenant,
        actor=actor,
        request=request,
        target=provider,
        changes=changes,
        sensitive=SENSITIVE,
    )
    return provider


def provider_update(
    *, provider: IdentityProvider, data: Mapping[str, Any], actor: Any, request: HttpRequest | None = None
) -> IdentityProvider:
    """Change a provider (the whole form); a blank client secret keeps the stored one."""
    tenant = provider.tenant
    merged = {f: getattr(provider, f) for f in PROVIDER_FIELDS}
    merged.update({k: v for k, v in data.items() if k in (*PROVIDER_FIELDS, "oidc_client_secret")})
    clean = _validate_provider(tenant=tenant, data=merged, provider=provider)
    secret = clean.pop("oidc_client_secret")
    if provider.is_active and not clean["is_active"]:
        _enforced_guard(tenant, without_provider=provider.pk)
    before = {f: getattr(provider, f) for f in PROVIDER_FIELDS}
    for field, value in clean.items():
        setattr(provider, field, value)
    if secret:
        provider.oidc_client_secret = secret.encode()
    try:
        provider.save()
    except IntegrityError:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"name": [_("This tenant already has an identity provider with this name.")]},
        ) from None
    shown_before, shown_after = _provider_audit_view(before), _provider_audit_view(clean)
    changes: dict[str, Any] = {
        f: [shown_before[f], shown_after[f]] for f in PROVIDER_FIELDS if before[f] != clean[f]
    }
    if secret:
        changes["oidc_client_secret"] = "changed"  # noqa: S105 (a marker; censored anyway)
    if changes:
        audit_record(
            "sso.provider_updated",
            tenant=tenant,
            actor=actor,
            request=request,
            target=provider,
            changes=changes,
            sensitive=SENSITIVE,
        )
    return provider


def provider_delete(*, provider: IdentityProvider, actor: Any, request: HttpRequest | None = None) -> None:
    """Delete a provider with its domains and linked identities (refused while enforcement rests on it)."""
    tenant = provider.tenant
    _enforced_guard(tenant, without_provider=provider.pk)
    label, pk = provider.name, provider.pk
    provider.delete()
    audit_record(
        "sso.provider_deleted",
        tenant=tenant,
        actor=actor,
        request=request,
        target_type="identityprovider",
        target_id=pk,
        target_label=label,
    )


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


def _fetch(session: HttpSession, url: str) -> bytes:
    """GET `url` (no redirects, private addresses refused) and read at most MAX_DOCUMENT bytes of it."""
    response = session.get(
        url, headers={"Accept": "application/json, application/xml, text/xml"}, stream=True
    )
    with response:
        if response.status_code != 200:
            raise ConnectorError(
                _("%(url)s answered HTTP %(status)s.")
                % {"url": safe_url(url), "status": response.status_code},
                permanent=True,
            )
        body = b""
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > MAX_DOCUMENT:
                raise ConnectorError(_("The answer is larger than 1 MB."), permanent=True)
    return body


def provider_check(*, provider: IdentityProvider, session: HttpSession | None = None) -> CheckResult:
    """Fetch the discovery document or metadata through the guarded session; say what is wrong, if anything.

    Nothing is stored: the sign-in fetches again (and caches) on its own.
    """
    import json

    session = session or idp_session()
    try:
        if provider.protocol == IdentityProvider.Protocol.OIDC:
            document = json.loads(_fetch(session, provider.oidc_discovery_url))
            if not isinstance(document, dict):
                return CheckResult(False, _("The discovery document is not a JSON object."))
            missing = [
                key
                for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
                if not isinstance(document.get(key), str) or not document.get(key)
            ]
            if missing:
                return CheckResult(
                    False,
                    _("The discovery document lacks: %(keys)s.") % {"keys": ", ".join(missing)},
                )
            return CheckResult(
                True, _("Discovery document found; issuer %(issuer)s.") % {"issuer": document["issuer"][:200]}
            )
        if provider.saml_metadata_url:
            xml = _fetch(session, provider.saml_metadata_url).decode("utf-8", "replace")
        else:
            xml = provider.saml_metadata_xml
        parsed = saml_metadata_parse(xml)
        return CheckResult(
            True,
            _("Valid IdP metadata; entity ID %(entity)s.") % {"entity": str(parsed["idp"]["entityId"])[:200]},
        )
    except ValueError:
        return CheckResult(False, _("The discovery document is not valid JSON."))
    except ValidationFailed as exc:
        return CheckResult(False, str(next(iter(exc.errors.values()))[0]) if exc.errors else str(exc))
    except ConnectorError as exc:
        return CheckResult(False, session.redact(str(exc)))


# --- domains -----------------------------------------------------------------------------------------------
def domain_normalise(value: str) -> str:
    """The A-label form of an e-mail domain; refuse wildcards, single labels and public suffixes."""
    domain = str(value or "").strip().lower().lstrip("@").rstrip(".")
    if not domain:
        raise ValidationFailed(_("Enter a domain."), {"domain": [_("This field is required.")]})
    if "*" in domain:
        raise ValidationFailed(_("Wildcards are not allowed."), {"domain": [_("Wildcards are not allowed.")]})
    invalid = _("Enter a domain name such as example.com (no address, path or port).")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise ValidationFailed(invalid, {"domain": [invalid]}) from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or len(ascii_domain) > 253 or labels[-1].isdigit():
        raise ValidationFailed(invalid, {"domain": [invalid]})
    if ascii_domain in PUBLIC_SUFFIXES:
        public = _("%(domain)s is a public suffix: add your organisation's own domain.") % {"domain": domain}
        raise ValidationFailed(public, {"domain": [public]})
    return ascii_domain


def _taken_message() -> str:
    return _("This domain is already verified by another organisation. Contact support if it is yours.")


def domain_add(
    *,
    tenant: Tenant,
    provider: IdentityProvider,
    domain: str,
    actor: Any,
    request: HttpRequest | None = None,
) -> SsoDomain:
    """Add an e-mail domain to route to `provider`, unverified, with a fresh DNS challenge token."""
    if provider.tenant_id != tenant.pk:
        raise ValidationFailed(
            _("No such identity provider."), {"identity_provider": [_("Choose a provider.")]}
        )
    name = domain_normalise(domain)
    if SsoDomain.objects.filter(domain=name, verified_at__isnull=False).exclude(tenant=tenant).exists():
        raise ValidationFailed(_taken_message(), {"domain": [_taken_message()]})
    try:
        with transaction.atomic():
            row = SsoDomain.objects.create(
                tenant=tenant,
                identity_provider=provider,
                domain=name,
                verification_token=secrets.token_urlsafe(24),
            )
    except IntegrityError:
        taken = _("This domain is already added.")
        raise ValidationFailed(taken, {"domain": [taken]}) from None
    audit_record(
        "sso.domain_added",
        tenant=tenant,
        actor=actor,
        request=request,
        target=row,
        changes={"domain": name, "identity_provider": provider.name},
    )
    return row


def domain_challenge(domain: SsoDomain) -> tuple[str, str]:
    """The DNS TXT record (name, value) that proves control of `domain`."""
    return f"{CHALLENGE_PREFIX}.{domain.domain}", domain.verification_token


def _resolver() -> dns.resolver.Resolver:
    """A resolver at HUB_SSO_DNS_RESOLVER (host or host:port) if set, else the system's."""
    configured = settings.HUB_SSO_DNS_RESOLVER
    if configured:
        host, _sep, port = configured.rpartition(":") if configured.count(":") == 1 else (configured, "", "")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = int(port) if port else 53
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = settings.HUB_SSO_DNS_TIMEOUT
    resolver.timeout = settings.HUB_SSO_DNS_TIMEOUT
    resolver.cache = None
    return resolver


def _txt_values(name: str) -> list[str] | None:
    """The TXT strings at `name` ([] when there are none); None when DNS could not be asked."""
    try:
        answer = _resolver().resolve(name, "TXT", raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout, OSError):
        return None
    except dns.exception.DNSException:
        return None
    values = []
    for record in answer.rrset or []:
        values.append(b"".join(record.strings).decode("utf-8", "replace"))
    return values


def _mark_verified(domain: SsoDomain) -> None:
    if (
        SsoDomain.objects.filter(domain=domain.domain, verified_at__isnull=False)
        .exclude(pk=domain.pk)
        .exists()
    ):
        raise ValidationFailed(_taken_message(), {"domain": [_taken_message()]})
    domain.verified_at = timezone.now()
    try:
        with transaction.atomic():
            domain.save(update_fields=["verified_at", "updated_at"])
    except IntegrityError:
        domain.verified_at = None
        raise ValidationFailed(_taken_message(), {"domain": [_taken_message()]}) from None


def domain_verify(*, domain: SsoDomain, actor: Any, request: HttpRequest | None = None) -> CheckResult:
    """Look up the challenge TXT record; mark the domain verified when it holds the token."""
    if domain.verified_at is not None:
        return CheckResult(True, _("The domain is verified."))
    name, token = domain_challenge(domain)
    values = _txt_values(name)
    if values is None:
        result = CheckResult(
            False, _("The DNS lookup failed (the resolver did not answer). Try again later.")
        )
    elif token in values:
        try:
            _mark_verified(domain)
        except ValidationFailed as exc:
            result = CheckResult(False, str(exc))
        else:
            result = CheckResult(True, _("The domain is verified."))
    elif values:
        result = CheckResult(
            False,
            _("%(name)s has TXT records, but none holds the token shown here. DNS changes can take a while.")
            % {"name": name},
        )
    else:
        result = CheckResult(
            False,
            _("No TXT record found at %(name)s yet. DNS changes can take a while.") % {"name": name},
        )
    audit_record(
        "sso.domain_verified" if result.ok else "sso.domain_verify_failed",
        tenant=domain.tenant,
        actor=actor,
        request=request,
        target=domain,
        outcome="success" if result.ok else "failure",
        changes={"method": "dns"},
    )
    return result


def domain_mark_verified(*, domain: SsoDomain, actor: Any, request: HttpRequest | None = None) -> None:
    """Mark a domain verified without DNS (platform operators only, having checked ownership otherwise)."""
    if not _is_operator(actor):
        raise Forbidden(_("Only platform operators may mark a domain verified by hand."))
    if domain.verified_at is not None:
        return
    _mark_verified(domain)
    audit_record(
        "sso.domain_verified",
        tenant=domain.tenant,
        actor=actor,
        request=request,
        target=domain,
        changes={"method": "operator"},
    )


def domain_delete(*, domain: SsoDomain, actor: Any, request: HttpRequest | None = None) -> None:
    tenant = domain.tenant
    if domain.verified_at is not None:
        _enforced_guard(tenant, without_domain=domain.pk)
    label, pk = domain.domain, domain.pk
    domain.delete()
    audit_record(
        "sso.domain_deleted",
        tenant=tenant,
        actor=actor,
        request=request,
        target_type="ssodomain",
        target_id=pk,
        target_label=label,
    )


# --- role mappings -----------------------------------------------------------------------------------------
def _validate_mapping(
    *, tenant: Tenant, data: Mapping[str, Any], mapping: RoleMapping | None
) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    group = str(data.get("group") or "").strip()
    if not group:
        errors["group"] = [_("This field is required.")]
    elif len(group) > 255:
        errors["group"] = [_("Use at most 255 characters.")]
    elif (
        RoleMapping.objects.filter(tenant=tenant, group=group)
        .exclude(pk=mapping.pk if mapping and mapping.pk else 0)
        .exists()
    ):
        errors["group"] = [_("This group already has a mapping.")]
    role = str(data.get("role") or "")
    if role not in Role.values:
        errors["role"] = [_("Choose a valid role.")]
    locales = _strings(data.get("locales"), "locales", errors, limit=16)
    regions = _strings(data.get("regions"), "regions", errors, limit=16)
    if (locales or regions) and role != Role.LOCALIZATION_EDITOR:
        errors.setdefault("locales", [_("Only localization editors are limited to locales and regions.")])
    for locale in locales:
        try:
            locale_validator(locale)
        except ValidationError as exc:
            errors["locales"] = [f"{locale[:16]}: {exc.messages[0]}"]
            break
    known = set(Region.objects.values_list("code", flat=True))
    unknown = [r for r in regions if r not in known]
    if unknown:
        errors["regions"] = [
            _("Unknown regions: %(values)s. Use %(allowed)s.")
            % {"values": ", ".join(unknown[:10]), "allowed": ", ".join(sorted(known))}
        ]
    if errors:
        raise ValidationFailed(_("Please correct the errors below."), errors)
    return {"group": group, "role": role, "locales": locales, "regions": regions}


def _renumber(tenant: Tenant, ordered: Iterable[RoleMapping]) -> None:
    for position, mapping in enumerate(ordered):
        if mapping.position != position:
            RoleMapping.objects.filter(pk=mapping.pk).update(position=position)
            mapping.position = position


def _mapping_changes(mapping: RoleMapping) -> dict[str, Any]:
    return {
        "group": mapping.group,
        "role": mapping.role,
        "locales": list(mapping.locales),
        "regions": list(mapping.regions),
        "position": mapping.position,
    }


def mapping_create(
    *, tenant: Tenant, data: Mapping[str, Any], actor: Any, request: HttpRequest | None = None
) -> RoleMapping:
    """Add a group → role rule at the end of the list (tried last)."""
    clean = _validate_mapping(tenant=tenant, data=data, mapping=None)
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=tenant.pk)  # one writer of the order at a time
        count = RoleMapping.objects.filter(tenant=tenant).count()
        if count >= MAX_MAPPINGS:
            raise ValidationFailed(_("A tenant has at most %(max)s role mappings.") % {"max": MAX_MAPPINGS})
        try:
            mapping = RoleMapping.objects.create(tenant=tenant, position=count, **clean)
        except IntegrityError:
            raise ValidationFailed(
                _("Please correct the errors below."), {"group": [_("This group already has a mapping.")]}
            ) from None
    audit_record(
        "sso.mapping_created",
        tenant=tenant,
        actor=actor,
        request=request,
        target=mapping,
        changes=_mapping_changes(mapping),
    )
    return mapping


def mapping_update(
    *, mapping: RoleMapping, data: Mapping[str, Any], actor: Any, request: HttpRequest | None = None
) -> RoleMapping:
    merged = {**_mapping_changes(mapping), **data}
    clean = _validate_mapping(tenant=mapping.tenant, data=merged, mapping=mapping)
    before = _mapping_changes(mapping)
    for field, value in clean.items():
        setattr(mapping, field, value)
    try:
        mapping.save()
    except IntegrityError:
        raise ValidationFailed(
            _("Please correct the errors below."), {"group": [_("This group already has a mapping.")]}
        ) from None
    after = _mapping_changes(mapping)
    changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if changes:
        audit_record(
            "sso.mapping_updated",
            tenant=mapping.tenant,
            actor=actor,
            request=request,
            target=mapping,
            changes=changes,
        )
    return mapping


def mapping_delete(*, mapping: RoleMapping, actor: Any, request: HttpRequest | None = None) -> None:
    tenant = mapping.tenant
    changes, pk, label = _mapping_changes(mapping), mapping.pk, str(mapping)
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=tenant.pk)
        mapping.delete()
        _renumber(tenant, RoleMapping.objects.filter(tenant=tenant).order_by("position", "id"))
    audit_record(
        "sso.mapping_deleted",
        tenant=tenant,
        actor=actor,
        request=request,
        target_type="rolemapping",
        target_id=pk,
        target_label=label,
        changes=changes,
    )


def mapping_move(
    *, mapping: RoleMapping, offset: int, actor: Any, request: HttpRequest | None = None
) -> RoleMapping:
    """Move a rule `offset` places (negative: earlier, so tried sooner); the order is renumbered 0..n-1."""
    tenant = mapping.tenant
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=tenant.pk)
        ordered = list(RoleMapping.objects.filter(tenant=tenant).order_by("position", "id"))
        index = next(i for i, m in enumerate(ordered) if m.pk == mapping.pk)
        target = max(0, min(len(ordered) - 1, index + offset))
        if target == index:
            return mapping
        ordered.insert(target, ordered.pop(index))
        _renumber(tenant, ordered)
    mapping.refresh_from_db()
    audit_record(
        "sso.mapping_moved",
        tenant=tenant,
        actor=actor,
        request=request,
        target=mapping,
        changes={"position": [index, target]},
    )
    return mapping


# --- enforcement and break-glass --------------------------------------------------------------------------
def enforcement_set(
    *,
    tenant: Tenant,
    enforced: bool,
    confirm_without_break_glass: bool = False,
    actor: Any,
    request: HttpRequest | None = None,
) -> Tenant:
    """Switch SSO enforcement; on only with an active IdP that has a verified domain, and a break-glass admin
    (or the admin's explicit confirmation that nobody keeps a password)."""
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.sso_enforced == enforced:
            tenant.sso_enforced = enforced
            return tenant
        if enforced:
            if not _still_enforceable(locked):
                message = _("Enforcement needs an active identity provider with a verified domain first.")
                raise ValidationFailed(message, {"sso_enforced": [message]})
            has_break_glass = Membership.objects.filter(
                tenant=locked, is_break_glass=True, role=Role.ADMIN
            ).exists()
            if not has_break_glass and not confirm_without_break_glass:
                message = _(
                    "No break-glass admin is designated: if the identity provider fails, nobody can sign in. "
                    "Ask a platform operator to designate one, or confirm that you accept this."
                )
                raise ValidationFailed(message, {"confirm_without_break_glass": [message]})
        Tenant.objects.filter(pk=tenant.pk).update(sso_enforced=enforced)
    tenant.sso_enforced = enforced
    audit_record(
        "sso.enforcement_changed",
        tenant=tenant,
        actor=actor,
        request=request,
        target=tenant,
        changes={
            "sso_enforced": [not enforced, enforced],
            **({"confirmed_without_break_glass": True} if enforced and confirm_without_break_glass else {}),
        },
    )
    return tenant


def break_glass_set(
    *, tenant: Tenant, user_id: int | None, actor: Any, request: HttpRequest | None = None
) -> Membership | None:
    """Designate the tenant's one break-glass admin (or none): platform operators only.

    The break-glass admin keeps signing in with a password and mandatory TOTP while SSO is enforced, and
    the IdP's provisioning never touches that membership. One per tenant keeps the exception small.
    """
    if not _is_operator(actor):
        raise Forbidden(_("Only platform operators may designate the break-glass admin."))
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=tenant.pk)
        current = Membership.objects.filter(tenant=tenant, is_break_glass=True).select_related("user").first()
        chosen = None
        if user_id is not None:
            chosen = Membership.objects.filter(tenant=tenant, user_id=user_id).select_related("user").first()
            if chosen is None:
                message = _("Choose a member of this tenant.")
                raise ValidationFailed(message, {"user": [message]})
            if chosen.role != Role.ADMIN:
                message = _("The break-glass account must be an admin of the tenant.")
                raise ValidationFailed(message, {"user": [message]})
        if (current and current.pk) == (chosen and chosen.pk):
            return chosen
        Membership.objects.filter(tenant=tenant, is_break_glass=True).update(is_break_glass=False)
        if chosen is not None:
            Membership.objects.filter(pk=chosen.pk).update(is_break_glass=True)
            chosen.is_break_glass = True
    audit_record(
        "sso.break_glass_changed",
        tenant=tenant,
        actor=actor,
        request=request,
        target_type="user",
        target_id=chosen.user_id if chosen else (current.user_id if current else ""),
        target_label=chosen.user.get_username() if chosen else "",
        changes={
            "break_glass": [
                current.user.get_username() if current else None,
                chosen.user.get_username() if chosen else None,
            ]
        },
    )
    return chosen
