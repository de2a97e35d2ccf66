-- The append-only guard of every audit table (events, purge checkpoints, chain anchors). Privileges come
-- first (the runtime role has no UPDATE, DELETE or TRUNCATE); this trigger also stops the owner and anyone
-- else who holds them. The one exception: a trigger created with the argument 'purgeable' lets the table's
-- owner delete rows, which only the SECURITY DEFINER audit_purge() runs as. No session setting can open it.
CREATE OR REPLACE FUNCTION audit_reject_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_NARGS > 0 AND TG_ARGV[0] = 'purgeable'
       AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit records are append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
