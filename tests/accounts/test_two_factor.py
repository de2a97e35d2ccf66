"""TOTP enrollment, backup codes, the OTP sign-in step, and where two-factor authentication is mandatory."""

from __future__ import annotations

import re
from base64 import b32encode
from typing import Any

import pyotp
import pytest
from django.test import Client
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

from apps.accounts import selectors
from apps.accounts.models import BackupCode, TOTPDevice
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add, tenant_update
from tests.factories import UserFactory
from tests.fixtures.auth import PASSWORD, enroll, login_verified, next_code, totp_for

pytestmark = pytest.mark.django_db
ENROLL = reverse("accounts:twofactor-enroll")
VERIFY = reverse("accounts:otp-verify")
LOGIN = reverse("accounts:login")


def _login(client: Client, username: str) -> Any:
    return client.post(LOGIN, {"username": username, "password": PASSWORD})


def _enroll_via_ui(client: Client, user: Any) -> tuple[TOTPDevice, list[str]]:
    page = client.get(ENROLL)
    assert page.status_code == 200
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(ENROLL, {"token": totp_for(device).now()})
    assert response.status_code == 200, "the codes are shown in the answer to the POST that made them"
    assert "no-store" in response["Cache-Control"]
    return TOTPDevice.objects.get(pk=device.pk), list(response.context["codes"])


# --- enrollment -------------------------------------------------------------------------------------------
def test_enrollment_page_shows_local_qr_svg_and_base32_secret(client: Client, bob: Any) -> None:
    client.force_login(bob)
    response = client.get(ENROLL)
    assert response.status_code == 200
    html = response.content.decode()
    device = TOTPDevice.objects.get(user=bob)
    assert device.confirmed is False
    secret = b32encode(device.bin_key).decode()
    assert re.sub(r"\s", "", response.context["secret"]) == secret
    assert "<svg" in html
    assert "http" not in response.context["qr_svg"].split("xmlns")[0]  # no external image service
    assert "otpauth://" not in html  # the URL is only inside the QR matrix
    # Reloading keeps the same pending secret (the app may already have scanned it).
    again = client.get(ENROLL)
    assert again.context["secret"] == response.context["secret"]
    assert TOTPDevice.objects.filter(user=bob).count() == 1


def test_enrollment_confirms_with_a_code_and_shows_ten_backup_codes_once(client: Client, bob: Any) -> None:
    client.force_login(bob)
    device, codes = _enroll_via_ui(client, bob)
    assert device.confirmed is True
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert selectors.backup_codes_remaining(user=bob) == 10
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    # Shown once: nothing keeps them, neither the session nor the database.
    assert not any(code in str(dict(client.session)) for code in codes)
    assert not BackupCode.objects.filter(digest__in=codes).exists()
    status = client.get(reverse("accounts:twofactor"))
    assert status.status_code == 200
    assert status.context["backup_codes_remaining"] == 10
    assert not any(code in status.content.decode() for code in codes)


def test_enrollment_with_wrong_code_is_a_field_error(client: Client, bob: Any) -> None:
    client.force_login(bob)
    client.get(ENROLL)
    for bad in ["123", "abcdef", "", "9" * 40]:
        response = client.post(ENROLL, {"token": bad})
        assert response.status_code == 400
        assert "token" in response.context["form"].errors
    assert TOTPDevice.objects.get(user=bob).confirmed is False


def test_enrollment_page_redirects_once_enrolled(client: Client, bob: Any) -> None:
    login_verified(client, bob)
    response = client.get(ENROLL)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:twofactor")


# --- the OTP step -----------------------------------------------------------------------------------------
def test_totp_code_completes_sign_in(client: Client, bob: Any) -> None:
    device = enroll(bob)
    assert _login(client, "bob")["Location"].startswith(VERIFY)
    response = client.post(VERIFY + "?next=/accounts/profile/", {"token": next_code(device)})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/profile/"
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.get("/accounts/profile/").status_code == 200


def test_otp_step_refuses_open_redirect(client: Client, bob: Any) -> None:
    device = enroll(bob)
    _login(client, "bob")
    response = client.post(VERIFY, {"token": next_code(device), "next": "https://evil.example.com/"})
    assert response["Location"] == reverse("console:home")


def test_wrong_and_malformed_codes_are_field_errors(client: Client, bob: Any, no_otp_throttle: None) -> None:
    enroll(bob)
    _login(client, "bob")
    for bad in ["111111x", "", "   "]:
        response = client.post(VERIFY, {"token": bad})
        assert response.status_code == 400
        assert "token" in response.context["form"].errors
    assert DEVICE_ID_SESSION_KEY not in client.session


def test_otp_step_needs_a_signed_in_user(client: Client) -> None:
    response = client.get(VERIFY)
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_backup_code_works_once(client: Client, bob: Any, no_otp_throttle: None) -> None:
    client.force_login(bob)
    _, codes = _enroll_via_ui(client, bob)
    client.post(reverse("accounts:logout"))
    _login(client, "bob")
    response = client.post(VERIFY, {"token": codes[0].upper()})  # case and spaces do not matter
    assert response.status_code == 302
    assert selectors.backup_codes_remaining(user=bob) == 9
    client.post(reverse("accounts:logout"))
    _login(client, "bob")
    reused = client.post(VERIFY, {"token": codes[0]})
    assert reused.status_code == 400
    assert DEVICE_ID_SESSION_KEY not in client.session


def test_regenerate_backup_codes_replaces_the_old_ones(client: Client, bob: Any) -> None:
    client.force_login(bob)
    _, old = _enroll_via_ui(client, bob)
    response = client.post(reverse("accounts:twofactor-backup-codes-regenerate"))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new = response.context["codes"]
    assert len(new) == 10
    assert set(new).isdisjoint(old)
    device = selectors.backup_device(user=bob)
    assert device is not None
    stored = set(BackupCode.objects.filter(device__user=bob).values_list("digest", flat=True))
    assert stored == {device.digest(code) for code in new}
    assert stored.isdisjoint(new)


def test_regenerate_without_device_is_refused(client: Client, bob: Any) -> None:
    client.force_login(bob)
    response = client.post(reverse("accounts:twofactor-backup-codes-regenerate"))
    assert response.status_code == 302
    assert BackupCode.objects.filter(device__user=bob).count() == 0


def test_remove_device_requires_a_current_code(client: Client, bob: Any, no_otp_throttle: None) -> None:
    device = login_verified(client, bob)
    url = reverse("accounts:twofactor-remove")
    wrong = client.post(url, {"token": "123456x"})
    assert wrong.status_code == 400
    assert "token" in wrong.context["remove_form"].errors
    assert TOTPDevice.objects.filter(user=bob).count() == 1
    empty = client.post(url, {})
    assert empty.status_code == 400
    response = client.post(url, {"token": next_code(device)})
    assert response.status_code == 302
    assert TOTPDevice.objects.filter(user=bob).count() == 0
    assert selectors.backup_codes_remaining(user=bob) == 0
    # A viewer does not need 2FA: the console stays open.
    assert client.get(reverse("accounts:profile")).status_code == 200


# --- mandatory 2FA ----------------------------------------------------------------------------------------
def test_admin_without_device_is_sent_to_enrollment_first(
    client: Client, alice: Any, tenant_a: Tenant
) -> None:
    response = _login(client, "alice")
    assert response.status_code == 302
    for path in ["/", f"/t/{tenant_a.slug}/", f"/t/{tenant_a.slug}/members/", "/accounts/profile/"]:
        blocked = client.get(path)
        assert blocked.status_code == 302, path
        assert blocked["Location"].startswith(ENROLL), path
    assert client.get(ENROLL).status_code == 200
    # Logout, static files, health and i18n stay reachable.
    assert client.get("/healthz").status_code in {200, 503}
    assert client.post("/i18n/setlang/", {"language": "en", "next": "/"}).status_code == 302
    assert client.post(reverse("accounts:logout")).status_code == 302


def test_admin_after_enrollment_reaches_the_page_they_wanted(
    client: Client, alice: Any, tenant_a: Tenant
) -> None:
    _login(client, "alice")
    target = f"/t/{tenant_a.slug}/members/"
    redirect_to = client.get(target)["Location"]
    assert redirect_to == ENROLL + "?next=%2Ft%2Ftenant-a%2Fmembers%2F"
    client.get(redirect_to)
    device = TOTPDevice.objects.get(user=alice)
    codes = client.post(ENROLL, {"token": totp_for(device).now(), "next": target})
    assert codes.status_code == 200
    assert codes.context["next"] == target
    assert client.get(target).status_code == 200


def test_compliance_officer_must_enroll(client: Client, tenant_a: Tenant) -> None:
    user = UserFactory.create(username="carol")
    membership_add(tenant=tenant_a, user=user, role=Role.COMPLIANCE_OFFICER)
    assert selectors.user_requires_2fa(user=user) is True
    client.force_login(user)
    assert client.get("/")["Location"].startswith(ENROLL)


def test_operator_must_enroll(client: Client, operator: Any) -> None:
    assert selectors.user_requires_2fa(user=operator) is True
    client.force_login(operator)
    assert client.get("/")["Location"].startswith(ENROLL)


def test_tenant_setting_requires_2fa_for_every_member(client: Client, bob: Any, tenant_a: Tenant) -> None:
    assert selectors.user_requires_2fa(user=bob) is False
    client.force_login(bob)
    assert client.get(f"/t/{tenant_a.slug}/").status_code == 200
    tenant_update(tenant=tenant_a, require_2fa=True)
    assert selectors.user_requires_2fa(user=bob) is True
    assert client.get(f"/t/{tenant_a.slug}/")["Location"].startswith(ENROLL)


def test_plain_viewer_is_not_forced(client: Client, bob: Any, charlie: Any) -> None:
    assert selectors.user_requires_2fa(user=bob) is False
    assert selectors.user_requires_2fa(user=charlie) is False
    client.force_login(bob)
    assert client.get("/accounts/profile/").status_code == 200


def test_api_answers_403_json_instead_of_redirecting(client: Client, alice: Any) -> None:
    client.force_login(alice)
    response = client.get("/api/schema/")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "two_factor_required"


def test_api_asks_unverified_device_holders_for_the_code(client: Client, bob: Any) -> None:
    enroll(bob)
    _login(client, "bob")
    response = client.get("/api/schema/")
    assert response.status_code == 403
    assert response.json()["code"] == "two_factor_required"


def test_htmx_requests_get_an_hx_redirect(client: Client, alice: Any) -> None:
    client.force_login(alice)
    response = client.get("/accounts/profile/", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith(ENROLL)


def test_verified_admin_gets_in(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    assert client.get(f"/t/{tenant_a.slug}/members/").status_code == 200


def test_django_admin_needs_a_verified_operator(client: Client, operator: Any) -> None:
    operator.is_superuser = True
    operator.save()
    device = enroll(operator)
    client.force_login(operator)
    # Signed in with the password only: sent to the OTP step.
    assert client.get("/admin/")["Location"].startswith(VERIFY)
    client.post(VERIFY, {"token": next_code(device)})
    assert client.get("/admin/").status_code == 200


def test_admin_site_is_the_otp_admin_site() -> None:
    from django.contrib import admin
    from django_otp.admin import OTPAdminSite

    assert isinstance(admin.site, OTPAdminSite)


def test_pyotp_and_device_agree(bob: Any) -> None:
    device = enroll(bob)
    assert device.verify_token(pyotp.TOTP(b32encode(device.bin_key).decode()).now()) is True
