"""Move second factors out of django-otp's plain-text tables into the sealed devices of 0002.

`otp_totp_totpdevice.key` held each TOTP seed in hex and `otp_static_statictoken.token` each backup code in
the clear. Every seed is sealed under the master key as it is (the user's authenticator app keeps working,
with the same drift, replay guard and throttling state); every unused backup code is kept as its keyed
digest (the user's printed codes keep working). The old rows are then deleted. The tables are read with SQL
because their apps are no longer installed; a database created after the switch has none and nothing to move.

Sessions lose the `accounts:new_backup_codes` key in which the old enrolment page parked fresh codes until
they were shown (cached_db sessions sit in the control database too).

Backwards, seeds are written back in hex (for a rollback to code that still uses django-otp's plugins);
backup codes cannot be recovered from their digests, so users regenerate them after such a rollback.
"""

from typing import Any

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.utils import timezone

LEGACY_TOTP = "otp_totp_totpdevice"
LEGACY_STATIC_DEVICE = "otp_static_staticdevice"
LEGACY_STATIC_TOKEN = "otp_static_statictoken"  # noqa: S105 - a table name

_THROTTLING = ("throttling_failure_timestamp", "throttling_failure_count")


def _rows(cursor: Any, sql: str) -> list[dict[str, Any]]:
    cursor.execute(sql)
    columns = [column.name for column in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _common(row: dict[str, Any]) -> dict[str, Any]:
    """Device fields every django-otp version has, plus the throttling and timestamps where present."""
    fields = {"user_id": row["user_id"], "name": row["name"], "confirmed": row["confirmed"]}
    fields.update({name: row[name] for name in (*_THROTTLING, "last_used_at") if row.get(name) is not None})
    return fields


def seal_legacy_devices(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    alias = connection.alias
    tables = set(connection.introspection.table_names())
    totp_model = apps.get_model("accounts", "TOTPDevice")
    backup_model = apps.get_model("accounts", "BackupCodeDevice")
    code_model = apps.get_model("accounts", "BackupCode")
    with connection.cursor() as cursor:
        if LEGACY_TOTP in tables:
            for row in _rows(cursor, f"SELECT * FROM {LEGACY_TOTP} ORDER BY id"):  # noqa: S608
                device = totp_model(
                    seed=bytes.fromhex(row["key"]),
                    step=row["step"],
                    t0=row["t0"],
                    digits=row["digits"],
                    tolerance=row["tolerance"],
                    drift=row["drift"],
                    last_t=row["last_t"],
                    **_common(row),
                )
                device.save(using=alias)
                totp_model.objects.using(alias).filter(pk=device.pk).update(
                    created_at=row.get("created_at") or timezone.now()
                )
            cursor.execute(f"DELETE FROM {LEGACY_TOTP}")  # noqa: S608
        if LEGACY_STATIC_DEVICE in tables and LEGACY_STATIC_TOKEN in tables:
            tokens: dict[int, list[str]] = {}
            for row in _rows(cursor, f"SELECT device_id, token FROM {LEGACY_STATIC_TOKEN}"):  # noqa: S608
                tokens.setdefault(row["device_id"], []).append(row["token"])
            for row in _rows(cursor, f"SELECT * FROM {LEGACY_STATIC_DEVICE} ORDER BY id"):  # noqa: S608
                device = backup_model(**_common(row))
                device.save(using=alias)
                code_model.objects.using(alias).bulk_create(
                    code_model(device=device, digest=_digest(device, token))
                    for token in tokens.get(row["id"], [])
                )
            cursor.execute(f"DELETE FROM {LEGACY_STATIC_TOKEN}")  # noqa: S608
            cursor.execute(f"DELETE FROM {LEGACY_STATIC_DEVICE}")  # noqa: S608


def _digest(device: Any, code: str) -> str:
    # Historical models have no methods: the same HMAC as BackupCodeDevice.digest (on the normalised code).
    import hashlib
    import hmac

    normalized = "".join(code.split()).replace("-", "").lower()
    return hmac.new(bytes(device.hmac_key), normalized.encode(), hashlib.sha256).hexdigest()


def unseal_to_legacy_devices(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    if LEGACY_TOTP not in set(connection.introspection.table_names()):
        return
    totp_model = apps.get_model("accounts", "TOTPDevice")
    columns = {
        c.name for c in connection.introspection.get_table_description(connection.cursor(), LEGACY_TOTP)
    }
    with connection.cursor() as cursor:
        for device in totp_model.objects.using(connection.alias).order_by("pk"):
            values = {
                "user_id": device.user_id,
                "name": device.name,
                "confirmed": device.confirmed,
                "key": bytes(device.seed).hex(),
                "step": device.step,
                "t0": device.t0,
                "digits": device.digits,
                "tolerance": device.tolerance,
                "drift": device.drift,
                "last_t": device.last_t,
                "throttling_failure_timestamp": device.throttling_failure_timestamp,
                "throttling_failure_count": device.throttling_failure_count,
                "created_at": device.created_at,
                "last_used_at": device.last_used_at,
            }
            values = {name: value for name, value in values.items() if name in columns}
            names = ", ".join(values)
            placeholders = ", ".join(["%s"] * len(values))
            cursor.execute(
                f"INSERT INTO {LEGACY_TOTP} ({names}) VALUES ({placeholders})",  # noqa: S608
                list(values.values()),
            )
        totp_model.objects.using(connection.alias).all().delete()


OLD_SESSION_KEY = "accounts:new_backup_codes"


def drop_backup_codes_from_sessions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # The configured session store (not a historical model): it decodes, and re-saves to cache and database.
    from django.conf import settings
    from django.utils.module_loading import import_string

    store_class = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    session_model = apps.get_model("sessions", "Session")
    rows = session_model.objects.using(schema_editor.connection.alias).filter(expire_date__gt=timezone.now())
    for session_key, data in rows.values_list("session_key", "session_data").iterator():
        if OLD_SESSION_KEY not in store_class().decode(data):
            continue
        store = store_class(session_key=session_key)
        store.pop(OLD_SESSION_KEY, None)
        store.save(must_create=False)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_otp_devices"), ("sessions", "0001_initial")]

    operations = [
        migrations.RunPython(seal_legacy_devices, unseal_to_legacy_devices, hints={"silo": "control"}),
        migrations.RunPython(
            drop_backup_codes_from_sessions, migrations.RunPython.noop, hints={"silo": "control"}
        ),
    ]
