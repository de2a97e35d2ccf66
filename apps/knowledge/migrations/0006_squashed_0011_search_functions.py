"""The hybrid search as database functions, from their files in apps/knowledge/sql/.

Squashes 0006-0011, which wrote each version into the migration itself. A database that applied them has
these very definitions already (tests/foundation/test_sql_files.py compares the files with what a migrated
database holds); a new one gets them here. A later change to a file reaches existing databases through a
new migration that applies the file again (apps/core/sql.py, RunSQLFile).

A database that applied only some of 0006-0011 (a development database left between them) is not upgraded
by this migration: Django then expects the replaced files, which are gone, and skips it. Migrate it to 0011
with the release before this one first, or create it again.
"""

from django.db import migrations

from apps.core.sql import RunSQLFile

REGION = {"silo": "region"}


class Migration(migrations.Migration):
    replaces = [
        ("knowledge", "0006_search_function"),
        ("knowledge", "0007_search_split_halves"),
        ("knowledge", "0008_search_best_chunk_lazy_distance"),
        ("knowledge", "0009_search_fts_common_words"),
        ("knowledge", "0010_search_common_words_argument"),
        ("knowledge", "0011_search_exact_small"),
    ]

    dependencies = [
        ("knowledge", "0005_search_fts_no_pending_list"),
    ]

    operations = [
        RunSQLFile(
            "knowledge",
            "knowledge_search_fts",
            digest="586ee2856a64",
            reverse_sql="DROP FUNCTION knowledge_search_fts",
            hints=REGION,
        ),
        RunSQLFile(
            "knowledge",
            "knowledge_search_fuse",
            digest="a6559014b7a4",
            reverse_sql="DROP FUNCTION knowledge_search_fuse",
            hints=REGION,
        ),
        # Calls the two above (a LANGUAGE sql body is checked when created), so it comes after them.
        RunSQLFile(
            "knowledge",
            "knowledge_search_chunks",
            digest="30b16757447c",
            reverse_sql="DROP FUNCTION knowledge_search_chunks",
            hints=REGION,
        ),
    ]
