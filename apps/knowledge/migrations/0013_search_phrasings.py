"""Search with phrasing and title chunks: they find an article, only its text's chunks are cited."""

from django.db import migrations

from apps.core.sql import RunSQLFile

REGION = {"silo": "region"}


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0012_phrasings"),
    ]

    operations = [
        RunSQLFile("knowledge", "knowledge_search_fuse", digest="de5e97915e89", hints=REGION),
    ]
