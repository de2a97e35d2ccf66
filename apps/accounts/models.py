"""Users (control silo) and their second factors. UI language and time zone preferences live on the user."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import zoneinfo
from base64 import b32encode
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from apps.security.sealed import SealedSecretField


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

    @property
    def is_platform_operator(self) -> bool:
        return self.is_staff


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
