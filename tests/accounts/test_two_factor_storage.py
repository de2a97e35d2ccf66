"""Second factors at rest: TOTP seeds sealed under the master key, backup codes kept as keyed digests.

The attacker here holds a copy of the control database (a dump, a backup, a read replica): it must give them
no seed to clone an authenticator app from and no backup code to type in.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pyotp
import pytest
from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, override_settings
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

from apps.accounts import selectors, services
from apps.accounts.models import BackupCode, BackupCodeDevice, TOTPDevice
from apps.audit.models import PlatformAuditEvent
from apps.security.keys import master_key_provider
from apps.security.sealed import Sealed, UnsealFailed, seal_is_current
from apps.tenants.demo import _demo_totp_seed, _ensure_totp
from tests.factories import UserFactory
from tests.fixtures.auth import PASSWORD, login_verified, totp_for
from tests.fixtures.database import pg_dump_all

ENROLL = reverse("accounts:twofactor-enroll")
REGENERATE = reverse("accounts:twofactor-backup-codes-regenerate")
VERIFY = reverse("accounts:otp-verify")
LOGIN = reverse("accounts:login")
DEMO_WITH_TOTP = ("operator", "alice", "cora", "gina")


def _forms(seed: bytes) -> list[str]:
    """Every way a seed is commonly written: hex (django-otp's column), base32 (the apps), base64."""
    b32 = base64.b32encode(seed).decode()
    return [
        seed.hex(),
        seed.hex().upper(),
        b32,
        b32.rstrip("="),
        b32.lower(),
        base64.b64encode(seed).decode(),
    ]


def _enroll_with_codes(client: Client, user: Any) -> tuple[TOTPDevice, list[str]]:
    client.force_login(user)
    client.get(ENROLL)
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(ENROLL, {"token": totp_for(device).now()})
    assert response.status_code == 200
    return TOTPDevice.objects.get(pk=device.pk), list(response.context["codes"])


@pytest.mark.django_db(transaction=True)
def test_a_pg_dump_holds_no_totp_seed_and_no_backup_code(tenant_a: Any) -> None:
    demo_users = [UserFactory.create(username=name, email=f"{name}@example.com") for name in DEMO_WITH_TOTP]
    printed = [_ensure_totp(user) for user in demo_users]  # what seed_demo prints for each
    bob = UserFactory.create(username="bob", email="bob@example.com")
    device, codes = _enroll_with_codes(Client(), bob)
    regenerated = Client()
    regenerated.force_login(bob)
    session = regenerated.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    new_codes = list(regenerated.post(REGENERATE).context["codes"])

    dump = pg_dump_all()

    assert "accounts_totpdevice" in dump and "seal1$" in dump  # the devices are in the dump, sealed
    seeds = [_demo_totp_seed(name) for name in DEMO_WITH_TOTP] + [device.bin_key]
    for seed in seeds:
        for form in _forms(seed):
            assert form not in dump
    for secret in printed:
        assert secret not in dump
    for code in codes + new_codes:
        assert code not in dump
    assert BackupCode.objects.filter(device__user=bob).count() == 10


@pytest.mark.django_db
def test_demo_totp_secrets_still_work(tenant_a: Any) -> None:
    for name in DEMO_WITH_TOTP:
        user = UserFactory.create(username=name, email=f"{name}@example.com")
        secret = _ensure_totp(user)
        assert secret == base64.b32encode(_demo_totp_seed(name)).decode()  # README's secrets are unchanged
        _ensure_totp(user)  # re-seeding keeps the same secret, one device
        device = TOTPDevice.objects.get(user=user)
        assert device.verify_token(pyotp.TOTP(secret).now()) is True


@pytest.mark.django_db
def test_a_sealed_seed_copied_to_another_users_device_does_not_open(bob: Any, alice: Any) -> None:
    victim = TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
    attacker = TOTPDevice.objects.create(user=bob, name="phone", confirmed=True)
    sealed = TOTPDevice.objects.filter(pk=victim.pk).values_list("seed", flat=True).get()
    TOTPDevice.objects.filter(pk=attacker.pk).update(seed=sealed)
    moved = TOTPDevice.objects.get(pk=attacker.pk)
    with pytest.raises(UnsealFailed):
        _ = moved.bin_key
    assert isinstance(TOTPDevice.objects.get(pk=victim.pk).__dict__["seed"], Sealed)
    assert seal_is_current(sealed)


@pytest.mark.django_db
def test_a_stored_digest_is_not_a_backup_code(client: Client, bob: Any, no_otp_throttle: None) -> None:
    """Pass-the-hash: typing in what the database holds gets nowhere."""
    _device, codes = _enroll_with_codes(client, bob)
    digest = BackupCode.objects.filter(device__user=bob).values_list("digest", flat=True).first()
    assert digest is not None and digest not in codes
    client.post(reverse("accounts:logout"))
    client.post(LOGIN, {"username": "bob", "password": PASSWORD})
    for attempt in (digest, digest[:16], digest[:10]):
        assert client.post(VERIFY, {"token": attempt}).status_code == 400
    assert DEVICE_ID_SESSION_KEY not in client.session
    accepted = client.post(VERIFY, {"token": codes[3].upper()})
    assert accepted.status_code == 302
    assert selectors.backup_codes_remaining(user=bob) == 9


@pytest.mark.django_db
def test_backup_codes_are_throttled_like_django_otps(bob: Any) -> None:
    codes = services._backup_codes_replace(user=bob)
    device = BackupCodeDevice.objects.get(user=bob)
    assert device.verify_token("not-a-code") is False
    # One failure: the next try within a second is refused, even with a good code, and not consumed.
    assert device.verify_token(codes[0]) is False
    assert selectors.backup_codes_remaining(user=bob) == 10
    device.throttling_failure_timestamp = device.throttling_failure_timestamp.replace(year=2000)
    assert device.verify_token(codes[0]) is True
    assert device.verify_token(codes[0]) is False  # single use


# --- migrating devices created by django-otp's plugins ----------------------------------------------------
LEGACY_DDL = """
CREATE TABLE otp_totp_totpdevice (
    id serial PRIMARY KEY, name varchar(64) NOT NULL, confirmed boolean NOT NULL, key varchar(80) NOT NULL,
    step smallint NOT NULL, t0 bigint NOT NULL, digits smallint NOT NULL, tolerance smallint NOT NULL,
    drift smallint NOT NULL, last_t bigint NOT NULL, throttling_failure_timestamp timestamptz NULL,
    throttling_failure_count integer NOT NULL, created_at timestamptz NULL, last_used_at timestamptz NULL,
    user_id bigint NOT NULL REFERENCES accounts_user(id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE otp_static_staticdevice (
    id serial PRIMARY KEY, name varchar(64) NOT NULL, confirmed boolean NOT NULL,
    throttling_failure_timestamp timestamptz NULL, throttling_failure_count integer NOT NULL,
    created_at timestamptz NULL, last_used_at timestamptz NULL,
    user_id bigint NOT NULL REFERENCES accounts_user(id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE otp_static_statictoken (
    id serial PRIMARY KEY, token varchar(16) NOT NULL,
    device_id integer NOT NULL REFERENCES otp_static_staticdevice(id) DEFERRABLE INITIALLY DEFERRED);
"""
LEGACY_TABLES = ("otp_static_statictoken", "otp_static_staticdevice", "otp_totp_totpdevice")
BEFORE = ("accounts", "0002_otp_devices")
AFTER = ("accounts", "0003_otp_devices_from_django_otp")


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


def _migrate_to_latest() -> None:
    """Every app back at its newest migration (going back to BEFORE also unapplied later ones, e.g. 0004)."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def legacy_tables(transactional_db: None) -> Iterator[Any]:
    """The database as django-otp 1.7's TOTP and static plugins left it, before migration 0003, with a user
    (created first: the user model has columns of later migrations)."""
    user = UserFactory.create(username="dora", email="dora@example.com")
    _migrate(BEFORE)
    with connection.cursor() as cursor:
        cursor.execute(LEGACY_DDL)
    try:
        yield user
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS " + ", ".join(LEGACY_TABLES))
        _migrate_to_latest()


def test_migration_seals_legacy_devices_and_nobody_is_locked_out(legacy_tables: Any) -> None:
    user = legacy_tables
    seed = bytes(range(1, 21))
    now_t = int(time.time()) // 30
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO otp_totp_totpdevice (name, confirmed, key, step, t0, digits, tolerance, drift,"
            " last_t, throttling_failure_count, created_at, user_id) VALUES"
            " ('phone', true, %s, 30, 0, 6, 1, 0, %s, 0, now(), %s)",
            [seed.hex(), now_t - 5, user.pk],
        )
        cursor.execute(
            "INSERT INTO otp_static_staticdevice (name, confirmed, throttling_failure_count, user_id)"
            " VALUES ('backup', true, 0, %s) RETURNING id",
            [user.pk],
        )
        static_id = cursor.fetchone()[0]
        for token in ("a1b2c3d4e5", "0f0f0f0f0f"):
            cursor.execute(
                "INSERT INTO otp_static_statictoken (device_id, token) VALUES (%s, %s)", [static_id, token]
            )

    parked = SessionStore()  # the old enrolment page parked fresh codes here until they were shown
    parked.update({"_auth_user_id": str(user.pk), "accounts:new_backup_codes": ["a1b2c3d4e5", "0f0f0f0f0f"]})
    parked.create()

    _migrate(AFTER)

    after = SessionStore(session_key=parked.session_key)
    assert "accounts:new_backup_codes" not in after.load()
    assert after["_auth_user_id"] == str(user.pk)  # the session itself lives on
    stored_session = Session.objects.get(session_key=parked.session_key).get_decoded()
    assert "accounts:new_backup_codes" not in stored_session
    with connection.cursor() as cursor:
        for table in LEGACY_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
            assert cursor.fetchone()[0] == 0, f"{table} still holds plain-text secrets"
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed is True and device.last_t == now_t - 5
    stored = TOTPDevice.objects.filter(pk=device.pk).values_list("seed", flat=True).get()
    assert stored.startswith("seal1$") and seed.hex() not in stored
    # The same authenticator app still signs in, once per code, and so do the printed backup codes.
    code = pyotp.TOTP(base64.b32encode(seed).decode()).now()
    assert device.verify_token(code) is True
    assert TOTPDevice.objects.get(pk=device.pk).verify_token(code) is False
    backup = BackupCodeDevice.objects.get(user=user)
    assert backup.confirmed is True
    assert not BackupCode.objects.filter(digest__in=["a1b2c3d4e5", "0f0f0f0f0f"]).exists()
    assert backup.verify_token("a1b2c3d4e5") is True
    assert BackupCodeDevice.objects.get(pk=backup.pk).verify_token("0f0f0f0f0f") is True
    assert BackupCode.objects.filter(device=backup).count() == 0


# --- master key rotation and operator reset ---------------------------------------------------------------
@pytest.fixture
def fresh_provider() -> Iterator[None]:
    master_key_provider.cache_clear()
    yield
    master_key_provider.cache_clear()


@pytest.mark.django_db
def test_reseal_lets_the_old_master_key_go(bob: Any, fresh_provider: None) -> None:
    device = TOTPDevice.objects.create(user=bob, name="phone", confirmed=True)
    seed = device.bin_key
    codes = services._backup_codes_replace(user=bob)
    keys = json.loads(Path(settings.HUB_MASTER_KEY_FILE).read_text())["keys"][0]
    new_b64 = base64.b64encode(b"N" * 32).decode()
    with override_settings(HUB_MASTER_KEYS=f"new-1:{new_b64},{keys['id']}:{keys['key']}"):
        master_key_provider.cache_clear()
        out = StringIO()
        call_command("reseal_second_factors", stdout=out)
        assert "re-sealed 2 second-factor device(s)" in out.getvalue()
        assert services.second_factor_secrets_reseal() == 0  # idempotent
    with override_settings(HUB_MASTER_KEYS=f"new-1:{new_b64}"):  # the old master key is gone
        master_key_provider.cache_clear()
        assert TOTPDevice.objects.get(pk=device.pk).bin_key == seed
        assert BackupCodeDevice.objects.get(user=bob).verify_token(codes[0]) is True


@pytest.mark.django_db
def test_an_operator_resets_a_users_second_factors_in_the_admin(
    client: Client, bob: Any, operator: Any, tenant_a: Any
) -> None:
    operator.is_superuser = True
    operator.save()
    victim = TOTPDevice.objects.create(user=bob, name="phone", confirmed=True)
    services._backup_codes_replace(user=bob)
    login_verified(client, operator)
    changelist = client.get(reverse("admin:accounts_totpdevice_changelist"))
    assert changelist.status_code == 200
    change = client.get(reverse("admin:accounts_totpdevice_change", args=[victim.pk]))
    assert change.status_code == 200
    assert "seal1$" not in change.content.decode()  # the seed is not shown, not even sealed
    assert client.get(reverse("admin:accounts_totpdevice_add")).status_code == 403
    response = client.post(reverse("admin:accounts_totpdevice_delete", args=[victim.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=bob).exists()
    assert not BackupCodeDevice.objects.filter(user=bob).exists()
    event = PlatformAuditEvent.objects.filter(action="security.otp_reset").get()
    assert (event.target_id, event.changes["actor_id"]) == (str(bob.pk), operator.pk)
