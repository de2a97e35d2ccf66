"""Full text: the GIN index covers each chunk's locale as well as its words.

The index is over `tsv || '~<locale>'` (see selectors.LOCALIZED_TSV_SQL), so a search asks it for the words
*and* a locale of its chain: the rows of other locales are no longer read only to be filtered out (measured
at 100,000 chunks: the full-text half read ~500 pages per query before, ~220 after). Django cannot express
this index, hence RunSQL; the plain index on `tsv` that it replaces is dropped afterwards.
"""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations

CREATE = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS chunk_tsv_locale_gin ON knowledge_chunk"
    " USING gin ((tsv || array_to_tsvector(ARRAY['~' || locale::text])))"
)
DROP = "DROP INDEX CONCURRENTLY IF EXISTS chunk_tsv_locale_gin"


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("knowledge", "0003_search_indexes"),
    ]

    operations = [
        migrations.RunSQL(CREATE, DROP, hints={"silo": "region"}),
        RemoveIndexConcurrently(model_name="chunk", name="chunk_tsv_gin"),
    ]
