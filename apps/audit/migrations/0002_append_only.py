"""Audit tables become append-only: a trigger rejects UPDATE and DELETE.

The guard function is apps/audit/sql/audit_reject_change.sql, today's text (0003 applies it again). This
migration first created an older guard and purge inline; 0003 replaced both, so a new database skips them.
"""

from django.db import migrations

from apps.core.sql import RunSQLFile


def trigger(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION audit_reject_change();"
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        RunSQLFile(
            "audit",
            "audit_reject_change",
            digest="85ffc5c18370",
            reverse_sql=migrations.RunSQL.noop,
            hints={"silo": "all"},
        ),
        migrations.RunSQL(
            trigger("audit_auditevent"),
            reverse_sql="DROP TRIGGER audit_auditevent_append_only ON audit_auditevent",
            hints={"silo": "region"},
        ),
        migrations.RunSQL(
            trigger("audit_platformauditevent"),
            reverse_sql="DROP TRIGGER audit_platformauditevent_append_only ON audit_platformauditevent",
            hints={"silo": "control"},
        ),
    ]
