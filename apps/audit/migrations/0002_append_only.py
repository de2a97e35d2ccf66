from django.db import migrations

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('hub.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- The one privileged way to remove events: purge a tenant's events older than a cut-off, recording a
-- checkpoint (the last purged seq and its hash) so the remaining chain still verifies.
CREATE OR REPLACE FUNCTION audit_purge(p_events regclass, p_checkpoints regclass, p_tenant bigint,
                                       p_before timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_hash text;
    v_count bigint;
BEGIN
    EXECUTE format('SELECT seq, hash FROM %s WHERE tenant_id = $1 AND occurred_at < $2 ORDER BY seq DESC LIMIT 1',
                   p_events) INTO v_seq, v_hash USING p_tenant, p_before;
    IF v_seq IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM set_config('hub.audit_purge', 'on', true);
    EXECUTE format('DELETE FROM %s WHERE tenant_id = $1 AND seq <= $2', p_events) USING p_tenant, v_seq;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM set_config('hub.audit_purge', 'off', true);
    EXECUTE format('INSERT INTO %s (tenant_id, purged_through_seq, hash_at_seq, purged_count, created_at) '
                   'VALUES ($1, $2, $3, $4, now())', p_checkpoints) USING p_tenant, v_seq, v_hash, v_count;
    RETURN v_count;
END $$;
"""


def trigger(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION audit_reject_change();"
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunSQL(FUNCTIONS, reverse_sql=migrations.RunSQL.noop, hints={"silo": "all"}),
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
