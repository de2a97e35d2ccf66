"""Search with phrasing and title chunks and a rerank: the database returns candidates with features.

Vectors are kept in the chunk's row (see the first operation).

The functions gain an argument (`p_m`, the candidates) and result columns, so they are new functions: the old
signatures are dropped first (the wrapper before the function it calls).
"""

from django.db import migrations

from apps.core.sql import RunSQLFile

REGION = {"silo": "region"}

DROP_OLD = """
DROP FUNCTION IF EXISTS knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery, integer, integer, integer,
    integer, double precision, double precision, text[], boolean
);
DROP FUNCTION IF EXISTS knowledge_search_fuse(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, bigint[], uuid[], varchar[], integer, integer, integer,
    double precision, double precision, boolean
);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0012_phrasings"),
    ]

    operations = [
        # A chunk's vector (2 KB) stays in its row instead of the TOAST table: the search reads many vectors
        # outside the HNSW index (exact scan, rerank features), and a TOAST fetch made each read ~3x dearer.
        # Rows written before keep their out-of-line vectors until rewritten (VACUUM FULL knowledge_chunk,
        # docs/deploy.md "Upgrading").
        migrations.RunSQL(
            "ALTER TABLE knowledge_chunk SET (toast_tuple_target = 8160)",
            "ALTER TABLE knowledge_chunk RESET (toast_tuple_target)",
            hints=REGION,
        ),
        migrations.RunSQL(DROP_OLD, migrations.RunSQL.noop, hints=REGION),
        RunSQLFile("knowledge", "knowledge_search_fuse", digest="e866caad2588", hints=REGION),
        RunSQLFile("knowledge", "knowledge_search_chunks", digest="f88b5dd54f14", hints=REGION),
    ]
