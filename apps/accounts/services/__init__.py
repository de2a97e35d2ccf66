"""Writes for accounts: sign-in with lockout, second factors, preferences, sign-up from an invitation.

Every security-relevant outcome goes through `record_security_event`, the one place a later issue points
at the audit log.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django_otp import DEVICE_ID_SESSION_KEY, devices_for_user
from django_otp import login as otp_login
from django_otp.models import Device

from apps.accounts import selectors
from apps.accounts.models import BackupCode, BackupCodeDevice, TOTPDevice
from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.core.errors import Conflict, ValidationFailed
from apps.observability.access import client_address
from apps.security import sealed
from apps.security.keys import master_key_provider
from apps.tenants.models import Invitation, Membership, Tenant
from apps.tenants.services import invitation_accept, invitation_resolve

logger = logging.getLogger("apps.accounts.security")

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"

# Never log these: secrets, or personal data beyond the user id.
_FORBIDDEN_DETAILS = frozenset(
    {"password", "token", "code", "codes", "secret", "key", "username", "email", "ip", "name"}
)


def record_security_event(
    action: str, *, user: Any, request: HttpRequest | None, outcome: str, **details: Any
) -> None:
    """Record a security-relevant action as one structured log line.

    Carries the user id (None for an unknown account) and non-personal details only; refuses detail keys
    that could hold secrets or personal data, so a careless caller fails in tests rather than in the log.
    """
    leaked = _FORBIDDEN_DETAILS.intersection(details)
    if leaked:
        raise ValueError(f"record_security_event: refusing sensitive details {sorted(leaked)}")
    user_id = getattr(user, "pk", None) if user is not None else None
    payload: dict[str, Any] = {
        "event": "security",
        "action": action,
        "outcome": outcome,
        "user_id": user_id,
        "path": request.path if request is not None else None,
        "details": details,
    }
    logger.info("security event %s %s", action, outcome, extra=payload)
    tenant_id = details.get("tenant_id")
    tenant = Tenant.objects.select_related("home_region").filter(pk=tenant_id).first() if tenant_id else None
    audit_record(
        f"security.{action}",
        tenant=tenant,
        actor=user if getattr(user, "is_authenticated", False) else None,
        request=request,
        target_type="user" if user_id else "",
        target_id=user_id or "",
        target_label=user.get_username() if user_id else "",
        changes=details,
        outcome={"success": Outcome.SUCCESS, "denied": Outcome.DENIED}.get(outcome, Outcome.FAILURE),
    )


# --- sign-in and lockout ----------------------------------------------------------------------------------
def _increment(key: str) -> int:
    window = settings.LOGIN_LOCKOUT_WINDOW
    cache.add(key, 0, timeout=window)  # starts the window at the first failure
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        return 1


def login_failure_record(*, username: str, ip: str) -> None:
    """Count one failed attempt against the account name (known or not) and the client address."""
    _increment(selectors.lockout_account_key(username))
    _increment(selectors.lockout_ip_key(ip))


def login_success_record(*, username: str) -> None:
    """Forget the failed attempts of an account name once its owner has signed in."""
    cache.delete(selectors.lockout_account_key(username))


class LoginOutcome(enum.Enum):
    OK = "ok"
    NEEDS_OTP = "needs_otp"
    INVALID = "invalid"
    LOCKED = "locked"
    SSO_REQUIRED = "sso_required"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    user: Any = None
    tenant: Any = None  # SSO_REQUIRED: whose identity provider to use


def login_attempt(*, request: HttpRequest, username: str, password: str) -> LoginResult:
    """Check a password sign-in against the lockout, then sign the user in (first factor only).

    Unknown usernames take the same path as wrong passwords (Django's backend hashes a dummy password),
    and count towards the lockout too, so neither the message nor the timing tells whether an account
    exists. An e-mail address stands for the one account that has it (the lockout then counts against that
    account, however it is named). A user with a confirmed device is signed in but unverified; the
    two-factor middleware then allows nothing but the OTP step.
    """
    ip = client_address(request.META)
    username = selectors.login_name(name=username)
    if selectors.login_is_locked(username=username, ip=ip):
        record_security_event("login", user=None, request=request, outcome="locked")
        return LoginResult(LoginOutcome.LOCKED)
    user = authenticate(request, username=username, password=password)
    if user is None:
        login_failure_record(username=username, ip=ip)
        # For the log only (never shown): which existing account was tried, if any.
        record_security_event(
            "login", user=selectors.user_by_username(username=username), request=request, outcome="failure"
        )
        if selectors.login_is_locked(username=username, ip=ip):
            return LoginResult(LoginOutcome.LOCKED)
        return LoginResult(LoginOutcome.INVALID)
    login_success_record(username=username)
    sso_tenant = selectors.sso_required_tenant(user=user)
    if sso_tenant is not None:  # the right password, but this organisation signs in through its IdP only
        record_security_event(
            "login",
            user=user,
            request=request,
            outcome="denied",
            reason="sso_required",
            tenant_id=sso_tenant.pk,
        )
        return LoginResult(LoginOutcome.SSO_REQUIRED, tenant=sso_tenant)
    auth_login(request, user)
    needs_otp = selectors.user_has_confirmed_device(user=user)
    record_security_event(
        "login", user=user, request=request, outcome="password_ok" if needs_otp else "success"
    )
    return LoginResult(LoginOutcome.NEEDS_OTP if needs_otp else LoginOutcome.OK, user)


def login_unlock(*, user: Any, actor: Any = None, request: HttpRequest | None = None) -> bool:
    """Clear the failed-attempt counter of `user`'s account; tell whether it was locked."""
    was_locked = selectors.user_is_locked(user=user)
    cache.delete(selectors.lockout_account_key(user.get_username()))
    record_security_event(
        "login_unlock",
        user=user,
        request=request,
        outcome="unlocked" if was_locked else "not_locked",
        actor_id=getattr(actor, "pk", None),
    )
    return was_locked


# --- second factor ----------------------------------------------------------------------------------------
def _normalize_token(token: str) -> str:
    return "".join(token.split()).replace("-", "").lower()


def otp_verify(*, request: HttpRequest, user: Any, token: str) -> Device | None:
    """Verify a TOTP or backup code for the signed-in user and mark the session verified.

    A failure counts towards the account lockout like a wrong password; django-otp also throttles each
    device. Returns the device that accepted the code, or None.
    """
    normalized = _normalize_token(token)
    device = None
    if normalized:
        with transaction.atomic():
            for candidate in devices_for_user(user, confirmed=True, for_verify=True):
                if candidate.verify_token(normalized):
                    device = candidate
                    break
    if device is None:
        login_failure_record(username=user.get_username(), ip=client_address(request.META))
        record_security_event("otp_verify", user=user, request=request, outcome="failure")
        return None
    otp_login(request, device)
    record_security_event(
        "otp_verify",
        user=user,
        request=request,
        outcome="success",
        device=type(device).__name__,
    )
    return device


def totp_enrollment_start(*, user: Any) -> TOTPDevice:
    """Return the user's pending (unconfirmed) TOTP device, creating one with a fresh secret."""
    if selectors.totp_device_confirmed(user=user) is not None:
        raise Conflict(_("Two-factor authentication is already set up."))
    device = selectors.totp_device_pending(user=user)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=str(_("Authenticator app")), confirmed=False)
    return device


def totp_enrollment_confirm(*, request: HttpRequest, user: Any, token: str) -> list[str]:
    """Confirm the pending TOTP device with a code from the app; return fresh backup codes to show once."""
    device = selectors.totp_device_pending(user=user)
    if device is None:
        raise Conflict(_("Start the set-up again."))
    with transaction.atomic():
        ok = device.verify_token(_normalize_token(token))
        if ok:
            device.confirmed = True
            device.save()
    if not ok:
        record_security_event("otp_enroll", user=user, request=request, outcome="failure")
        raise ValidationFailed(
            _("Wrong code."), {"token": [_("That code is not valid. Check the time on your phone.")]}
        )
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    codes = _backup_codes_replace(user=user)
    otp_login(request, device)
    record_security_event("otp_enroll", user=user, request=request, outcome="success")
    return codes


def _backup_codes_replace(*, user: Any) -> list[str]:
    """Replace the user's backup codes; only their keyed digests are stored, the codes are returned once."""
    codes = [secrets.token_hex(5) for _ in range(settings.OTP_BACKUP_CODE_COUNT)]
    with transaction.atomic():
        BackupCodeDevice.objects.filter(user=user).delete()
        device = BackupCodeDevice.objects.create(user=user, name=str(_("Backup codes")), confirmed=True)
        BackupCode.objects.bulk_create(
            BackupCode(device=device, digest=device.digest(code)) for code in codes
        )
    return codes


def backup_codes_regenerate(*, request: HttpRequest, user: Any) -> list[str]:
    """Replace the user's backup codes (the old ones stop working); return the new ones to show once."""
    if selectors.totp_device_confirmed(user=user) is None:
        raise Conflict(_("Set up an authenticator app first."))
    codes = _backup_codes_replace(user=user)
    record_security_event("backup_codes_regenerate", user=user, request=request, outcome="success")
    return codes


def two_factor_remove(*, request: HttpRequest, user: Any, token: str) -> None:
    """Remove every second factor of the user, after checking a current code from one of them."""
    normalized = _normalize_token(token)
    verified = False
    if normalized:
        with transaction.atomic():
            verified = any(
                d.verify_token(normalized) for d in devices_for_user(user, confirmed=True, for_verify=True)
            )
    if not verified:
        record_security_event("otp_remove", user=user, request=request, outcome="failure")
        raise ValidationFailed(_("Wrong code."), {"token": [_("That code is not valid.")]})
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        BackupCodeDevice.objects.filter(user=user).delete()
    request.session.pop(DEVICE_ID_SESSION_KEY, None)
    record_security_event("otp_remove", user=user, request=request, outcome="success")


def two_factor_reset_by_operator(*, user: Any, actor: Any, request: HttpRequest | None = None) -> None:
    """Remove every second factor of `user` for an operator (a lost phone); the user enrols again."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        BackupCodeDevice.objects.filter(user=user).delete()
    record_security_event("otp_reset", user=user, request=request, outcome="success", actor_id=actor.pk)


def second_factor_secrets_reseal(*, actor: Any = None) -> int:
    """Re-seal TOTP seeds and backup-code keys under the current master key, so an old one can be removed.

    Run after adding a master key (`rotate_keys --master` does the same for the tenants' data keys). Each row
    is locked while it is rewritten, so a concurrent sign-in never loses its drift or replay state.
    """
    current = f"{sealed.PREFIX}${master_key_provider().current_key_id}$"
    count = 0
    for model, field in ((TOTPDevice, "seed"), (BackupCodeDevice, "hmac_key")):
        stale = model.objects.exclude(**{f"{field}__startswith": current}).values_list("pk", flat=True)
        for pk in list(stale):
            with transaction.atomic():
                device = model.objects.select_for_update().filter(pk=pk).first()
                if device is None:
                    continue
                setattr(device, field, bytes(getattr(device, field)))  # the secret again: sealed anew on save
                device.save(update_fields=[field])
                count += 1
    audit_record(
        "security.second_factors_resealed",
        actor=actor,
        target_type="master_key",
        target_label=master_key_provider().current_key_id,
        changes={"devices": count},
    )
    return count


# --- profile ----------------------------------------------------------------------------------------------
def user_update_preferences(*, user: Any, language: str | None = None, time_zone: str | None = None) -> Any:
    """Save the user's console language and time zone (validated against settings.LANGUAGES / zoneinfo)."""
    fields = []
    if language is not None:
        user.language = language
        fields.append("language")
    if time_zone is not None:
        user.time_zone = time_zone
        fields.append("time_zone")
    try:
        user.full_clean(
            validate_unique=False, exclude=[f.name for f in user._meta.fields if f.name not in fields]
        )
    except ValidationError as exc:
        user.refresh_from_db(fields=fields)
        raise ValidationFailed(_("Invalid preferences."), exc.message_dict) from None
    if fields:
        user.save(update_fields=fields)
    return user


# --- invitations ------------------------------------------------------------------------------------------
def invitation_matches_user(*, invitation: Invitation, user: Any) -> bool:
    return bool(user.email) and user.email.casefold() == invitation.email.casefold()


def invitation_accept_as_user(*, request: HttpRequest | None, token: str, user: Any) -> Membership:
    """Accept an invitation for the signed-in user, who must hold the invited e-mail address."""
    invitation = invitation_resolve(token=token)
    if not invitation_matches_user(invitation=invitation, user=user):
        raise Conflict(_("This invitation was sent to a different e-mail address."))
    membership = invitation_accept(token=token, user=user)
    record_security_event(
        "invitation_accept", user=user, request=request, outcome="success", tenant_id=membership.tenant_id
    )
    return membership


def user_signup_from_invitation(
    *, request: HttpRequest, token: str, username: str, password: str
) -> Membership:
    """Create an account with the invited e-mail address, accept the invitation and sign the user in."""
    user_model = get_user_model()
    invitation = invitation_resolve(token=token)
    if selectors.user_by_email(email=invitation.email) is not None:
        raise Conflict(_("An account with this e-mail address exists; sign in to accept."))
    user = user_model(username=username, email=invitation.email)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationFailed(_("Choose another password."), {"password1": list(exc.messages)}) from None
    user.set_password(password)
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise ValidationFailed(_("Check the form."), exc.message_dict) from None
    try:
        with transaction.atomic():
            user.save()
            membership = invitation_accept(token=token, user=user)
    except IntegrityError:
        raise ValidationFailed(
            _("Username taken."), {"username": [_("A user with that username already exists.")]}
        ) from None
    auth_login(request, user, backend=MODEL_BACKEND)
    record_security_event(
        "signup", user=user, request=request, outcome="success", tenant_id=membership.tenant_id
    )
    return membership
