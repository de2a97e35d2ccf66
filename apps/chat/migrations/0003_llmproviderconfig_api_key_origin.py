"""Bind each language-model provider's stored API key to the origin of its base URL today (issue 14).

From now on the key is sent only to that origin; changing the base URL to another host needs the key again.
"""

from typing import Any

from django.db import migrations, models, router


def bind_existing(apps: Any, schema_editor: Any) -> None:
    from connectors.http import url_origin

    LlmProviderConfig = apps.get_model("chat", "LlmProviderConfig")
    alias = schema_editor.connection.alias
    if not router.allow_migrate_model(alias, LlmProviderConfig):
        return
    # values(): the base URL only, the key is not decrypted.
    for row in LlmProviderConfig.objects.using(alias).values("pk", "base_url").iterator():
        LlmProviderConfig.objects.using(alias).filter(pk=row["pk"]).update(
            api_key_origin=url_origin(row["base_url"] or "")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0002_llmproviderconfig_classify_intents"),
    ]

    operations = [
        migrations.AddField(
            model_name="llmproviderconfig",
            name="api_key_origin",
            field=models.CharField(blank=True, default="", max_length=300, verbose_name="API key entered for"),
        ),
        migrations.RunPython(bind_existing, migrations.RunPython.noop, elidable=True),
    ]
