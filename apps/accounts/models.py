"""Users (control silo) and their second factors. UI language and time zone preferences live on the user."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
import zoneinfo
from base64 import b32encode
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from apps.core.models import RegionModel, TimeStampedModel
from apps.security.sealed import SealedSecretField
from apps.tenants.models import Role, Tenant, locale_validator


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("Unknown time zone “%(zone)s”."), params={"zone": value})


class User(AbstractUser):  # type: ignore[django-manager-missing]  # devices subclass untyped django-otp
    """A person who signs in to the console. Platform operators have `is_staff`."""

    email = models.EmailField(_("email address"), unique=True)
    language = models.CharField(
        _("language"),
        max_length=8,
        choices=settings.LANGUAGES,
        default="en",
        help_text=_("Language of the console."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text=_("Dates and times are shown in this zone."),
    )

    session_epoch = models.PositiveIntegerField(
        default=0, editable=False, help_text=_("Raised to end every session of the user (see sessions_end).")
    )

    @property
    def is_platform_operator(self) -> bool:
        return self.is_staff

    def get_session_auth_hash(self) -> str:
        """Django's hash of the password, plus the session epoch once it was raised.

        Django compares this with the hash stored in each session on every request and flushes a session
        that no longer matches: raising `session_epoch` ends all of the user's sessions everywhere (SCIM
        deactivation, removal from the IdP) without an index of sessions. Epoch 0 keeps Django's own hash,
        so sessions made before the field existed stay valid.
        """
        if not self.session_epoch:
            return super().get_session_auth_hash()
        return salted_hmac(
            "apps.accounts.User.get_session_auth_hash",
            f"{self.password}:{self.session_epoch}",
            algorithm="sha256",
        ).hexdigest()


# --- second factors (django-otp devices whose secrets never sit in the database in the clear) -------------
def new_totp_seed() -> bytes:
    """A fresh 20-byte TOTP seed (the length RFC 4226 recommends for HMAC-SHA1)."""
    return secrets.token_bytes(20)


def new_backup_code_key() -> bytes:
    return secrets.token_bytes(32)


class TOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    """An authenticator app (RFC 6238): django-otp's TOTP device with its seed sealed under the master key.

    Same fields, drift tracking (`OTP_TOTP_SYNC`), replay guard (`last_t`) and throttling
    (`OTP_TOTP_THROTTLE_FACTOR`) as `django_otp.plugins.otp_totp`, which this replaces: its `key` column held
    the seed in hex, readable in any database dump or backup.
    """

    seed = SealedSecretField(bind_to="user_id", default=new_totp_seed)
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    last_t = models.BigIntegerField(default=-1)

    class Meta(Device.Meta):
        verbose_name = _("TOTP device")
        verbose_name_plural = _("TOTP devices")

    @property
    def bin_key(self) -> bytes:
        """The seed (django-otp's name for it)."""
        return bytes(self.seed)

    def get_throttle_factor(self) -> int:
        return int(getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1))

    def verify_token(self, token: Any) -> bool:
        """Verify like django-otp's TOTPDevice: throttled, within `tolerance` steps, each step only once."""
        allowed, _info = self.verify_is_allowed()
        if not allowed:
            return False
        try:
            value = int(token)
        except (TypeError, ValueError):
            verified = False
        else:
            totp = TOTP(self.bin_key, self.step, self.t0, self.digits, self.drift)
            totp.time = time.time()
            verified = bool(totp.verify(value, self.tolerance, self.last_t + 1))
            if verified:
                self.last_t = totp.t()
                if getattr(settings, "OTP_TOTP_SYNC", True):
                    self.drift = totp.drift
                self.throttle_reset(commit=False)
                self.set_last_used_timestamp(commit=False)
                self.save()
        if not verified:
            self.throttle_increment(commit=True)
        return verified

    @property
    def config_url(self) -> str:
        """The otpauth:// URL an authenticator app scans (Google's Key Uri Format; issuer from settings)."""
        label = str(self.user.get_username())
        params = urlencode(
            {
                "secret": b32encode(self.bin_key),
                "algorithm": "SHA1",
                "digits": self.digits,
                "period": self.step,
            }
        )
        issuer = str(getattr(settings, "OTP_TOTP_ISSUER", "") or "").replace(":", "")
        if issuer:
            label = f"{issuer}:{label}"
            params += f"&issuer={quote(issuer)}"
        return f"otpauth://totp/{quote(label)}?{params}"


class BackupCodeDevice(TimestampMixin, ThrottlingMixin, Device):
    """A user's single-use backup codes, kept only as HMAC-SHA256 digests under a per-device sealed key.

    Replaces django-otp's StaticDevice, whose tokens sat in the clear (and could be typed in as read from a
    dump). Throttled like it (`OTP_STATIC_THROTTLE_FACTOR`); a code is deleted when used.
    """

    hmac_key = SealedSecretField(bind_to="user_id", default=new_backup_code_key)

    class Meta(Device.Meta):
        verbose_name = _("backup code set")
        verbose_name_plural = _("backup code sets")

    def digest(self, code: str) -> str:
        return hmac.new(bytes(self.hmac_key), code.encode(), hashlib.sha256).hexdigest()

    def get_throttle_factor(self) -> int:
        return int(getattr(settings, "OTP_STATIC_THROTTLE_FACTOR", 1))

    def verify_token(self, token: Any) -> bool:
        """Accept one unused code (compared in constant time) and delete it."""
        allowed, _info = self.verify_is_allowed()
        if not allowed:
            return False
        candidate = self.digest(str(token))
        match = None
        for code in self.codes.all():
            if hmac.compare_digest(code.digest, candidate):  # every row is compared: no early exit
                match = code
        if match is None:
            self.throttle_increment(commit=True)
            return False
        match.delete()
        self.throttle_reset(commit=False)
        self.set_last_used_timestamp(commit=False)
        self.save()
        return True


class BackupCode(models.Model):
    """One unused backup code of a device, as its keyed digest."""

    device = models.ForeignKey(BackupCodeDevice, related_name="codes", on_delete=models.CASCADE)
    digest = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"backup code #{self.pk}"


# --- single sign-on (per-tenant identity providers) and SCIM provisioning --------------------------------
class IdentityProvider(TimeStampedModel):
    """A tenant's OpenID Connect or SAML 2.0 identity provider.

    The protocol code is pure (`connectors.oidc`, `connectors.saml`); this row holds what the tenant admin
    configured. The OIDC client secret is sealed under the master key, bound to the tenant.
    """

    class Protocol(models.TextChoices):
        OIDC = "oidc", _("OpenID Connect")
        SAML = "saml", _("SAML 2.0")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="identity_providers")
    name = models.CharField(_("name"), max_length=100)
    protocol = models.CharField(_("protocol"), max_length=8, choices=Protocol.choices)
    is_active = models.BooleanField(_("active"), default=True)
    # OpenID Connect
    oidc_discovery_url = models.URLField(
        _("discovery URL"),
        max_length=500,
        blank=True,
        help_text=_("The issuer's /.well-known/openid-configuration address."),
    )
    oidc_client_id = models.CharField(_("client ID"), max_length=255, blank=True)
    oidc_client_secret = SealedSecretField(bind_to="tenant_id", null=True, blank=True)
    oidc_scopes = models.CharField(
        _("scopes"),
        max_length=255,
        default="openid email profile",
        help_text=_("Space-separated; “openid” is always asked for."),
    )
    # SAML 2.0
    saml_metadata_url = models.URLField(
        _("IdP metadata URL"),
        max_length=500,
        blank=True,
        help_text=_("Fetched through the guarded HTTP session; or paste the metadata XML instead."),
    )
    saml_metadata_xml = models.TextField(_("IdP metadata XML"), blank=True)
    # claims, roles and second factor
    groups_claim = models.CharField(
        _("groups claim"),
        max_length=200,
        default="groups",
        help_text=_("The OIDC claim or SAML attribute that lists the user's groups."),
    )
    default_role = models.CharField(
        _("role without a matching group"),
        max_length=32,
        choices=Role.choices,
        blank=True,
        help_text=_("Leave empty to refuse users none of whose groups is mapped to a role."),
    )
    accept_idp_mfa = models.BooleanField(
        _("accept the IdP's multi-factor authentication"),
        default=False,
        help_text=_(
            "When the IdP reports MFA (OIDC amr/acr, SAML AuthnContextClassRef), our TOTP is not asked; "
            "otherwise roles that require two factors are still asked for TOTP."
        ),
    )
    mfa_values = ArrayField(
        models.CharField(max_length=200),
        default=list,
        blank=True,
        verbose_name=_("values that mean MFA"),
        help_text=_("amr/acr values or AuthnContextClassRefs that count as MFA (empty: the usual ones)."),
    )

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="identityprovider_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class SsoDomain(TimeStampedModel):
    """An e-mail domain whose users the login page sends to a tenant's identity provider.

    Only a verified domain routes users (home-realm discovery) and lets SCIM/JIT create accounts; a
    verified domain belongs to one tenant only.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sso_domains")
    identity_provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(_("domain"), max_length=253)
    verification_token = models.CharField(max_length=64, editable=False)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "domain"], name="ssodomain_unique_per_tenant"),
            models.UniqueConstraint(
                fields=["domain"], condition=Q(verified_at__isnull=False), name="ssodomain_verified_once"
            ),
        ]

    def __str__(self) -> str:
        return self.domain


class RoleMapping(TimeStampedModel):
    """IdP group → role in the tenant (with a localization editor's locales/regions).

    Applied at every sign-in and on every SCIM group change; rules are tried in `position` order and the
    first whose group the user is in wins.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="role_mappings")
    group = models.CharField(
        _("IdP group"), max_length=255, help_text=_("The group's name or ID exactly as the IdP sends it.")
    )
    role = models.CharField(_("role"), max_length=32, choices=Role.choices)
    locales = ArrayField(
        models.CharField(max_length=16, validators=[locale_validator]),
        default=list,
        blank=True,
        verbose_name=_("locales"),
    )
    regions = ArrayField(models.CharField(max_length=16), default=list, blank=True, verbose_name=_("regions"))
    position = models.PositiveIntegerField(_("position"), default=0)

    class Meta:
        ordering = ["tenant", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "group"], name="rolemapping_unique_group")]

    def __str__(self) -> str:
        return f"{self.group} → {self.role}"


class ExternalIdentity(TimeStampedModel):
    """The link between a user and their subject (OIDC `sub`, SAML NameID) at one identity provider."""

    identity_provider = models.ForeignKey(
        IdentityProvider, on_delete=models.CASCADE, related_name="identities"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities"
    )
    subject = models.CharField(max_length=255)
    groups = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["identity_provider", "subject"], name="externalidentity_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.identity_provider}: {self.subject}"


class ScimToken(TimeStampedModel):
    """A tenant's bearer token for /scim/v2/; only its SHA-256 hash is kept (the prefix tells them apart)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="scim_tokens")
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ScimUser(TimeStampedModel):
    """A user as one tenant's SCIM client sees it: its own id, the IdP's externalId, active or not."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="scim_users")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scim_users")
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    external_id = models.CharField(max_length=255, blank=True)
    # The client's userName (Entra: the UPN, Okta: the login), unique per tenant ignoring case; kept here
    # and not in User.username, which is global: one tenant's client must not rename anyone elsewhere.
    user_name = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["tenant", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="scimuser_unique_user"),
            models.UniqueConstraint(
                fields=["tenant", "external_id"],
                condition=~Q(external_id=""),
                name="scimuser_unique_external",
            ),
            models.UniqueConstraint(
                "tenant",
                Lower("user_name"),
                condition=~Q(user_name=""),
                name="scimuser_unique_user_name",
            ),
        ]

    def __str__(self) -> str:
        return str(self.scim_id)


class ScimGroup(TimeStampedModel):
    """A group pushed by a tenant's SCIM client; its display name is what role mappings match."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="scim_groups")
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    display_name = models.CharField(max_length=255)
    external_id = models.CharField(max_length=255, blank=True)
    members = models.ManyToManyField(ScimUser, related_name="groups", blank=True)

    class Meta:
        ordering = ["tenant", "display_name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "display_name"], name="scimgroup_unique_name"),
        ]

    def __str__(self) -> str:
        return self.display_name


# --- access reviews (issue 22) ------------------------------------------------------------------------------
class AccessReview(RegionModel):
    """A reviewer's sign-off on the tenant's access review report, kept in the region with its audit chain.

    `digest` is the SHA-256 of the report's canonical JSON at sign-off: the same value a signed export of that
    report carries in its manifest, so an auditor can match the export to the review. Reviewers are control
    users, hence a plain id and the username as it was.
    """

    hub_silo: ClassVar[str] = "region"

    reviewer_id = models.BigIntegerField(null=True, blank=True)
    reviewer_label = models.CharField(max_length=200)
    digest = models.CharField(max_length=64, db_index=True)
    counts = models.JSONField(default=dict)
    flags_count = models.PositiveIntegerField(default=0)
    note = models.TextField(blank=True, default="")
    audit_seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant_id", "created_at"], name="accessreview_tenant_created")]

    def __str__(self) -> str:
        return f"{self.reviewer_label} {self.created_at:%Y-%m-%d}"
