"""Bind each connection's stored credentials to the endpoint origins it has today (issue 14).

From now on a connection refuses to use its credentials for any other origin; existing connections are bound
to the addresses they were configured (and their credentials entered) for, so nothing stops working.
"""

from typing import Any

from django.db import migrations, models, router


def bind_existing(apps: Any, schema_editor: Any) -> None:
    from apps.integrations.conf import endpoint_origins
    from connectors.errors import InvalidConfig

    Connection = apps.get_model("integrations", "Connection")
    alias = schema_editor.connection.alias
    if not router.allow_migrate_model(alias, Connection):
        return
    # values(): the settings only, nothing is decrypted.
    for row in Connection.objects.using(alias).values("pk", "kind", "settings").iterator():
        try:
            origins = endpoint_origins(row["kind"], row["settings"] or {})
        except InvalidConfig:  # an unregistered kind binds to nothing: its credentials stay unusable
            origins = []
        Connection.objects.using(alias).filter(pk=row["pk"]).update(credentials_origins=origins)


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0003_outbox"),
    ]

    operations = [
        migrations.AddField(
            model_name="connection",
            name="credentials_origins",
            field=models.JSONField(blank=True, default=list, verbose_name="credentials entered for"),
        ),
        migrations.RunPython(bind_existing, migrations.RunPython.noop, elidable=True),
    ]
