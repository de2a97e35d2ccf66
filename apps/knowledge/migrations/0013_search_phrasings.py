"""Search with phrasing and title chunks and a rerank: the database returns candidates with features.

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
        migrations.RunSQL(DROP_OLD, migrations.RunSQL.noop, hints=REGION),
        RunSQLFile("knowledge", "knowledge_search_fuse", digest="789ff84806d7", hints=REGION),
        RunSQLFile("knowledge", "knowledge_search_chunks", digest="451028131be1", hints=REGION),
    ]
