from django.db import migrations


class Migration(migrations.Migration):
    """Enable pgvector everywhere; region databases hold the knowledge chunks."""

    initial = True
    dependencies = []

    operations = [
        migrations.RunSQL(
            "CREATE EXTENSION IF NOT EXISTS vector",
            reverse_sql=migrations.RunSQL.noop,
            hints={"silo": "all"},
        ),
    ]
