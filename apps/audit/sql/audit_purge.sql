-- The one way to remove a tenant's audit events: those older than a cut-off, leaving a checkpoint (the last
-- purged seq and its hash) so the rest of the chain still verifies. SECURITY DEFINER: it runs as the NOLOGIN
-- owner of the audit tables (apps/audit/roles.py), so the runtime role needs only EXECUTE, never DELETE.
-- A fixed search_path and schema-qualified tables: nothing the caller creates can be resolved in here.
CREATE OR REPLACE FUNCTION audit_purge(p_tenant bigint, p_before timestamptz) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_seq bigint;
    v_hash text;
    v_count bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('hub-audit'), p_tenant::integer);
    SELECT seq, hash INTO v_seq, v_hash FROM public.audit_auditevent
        WHERE tenant_id = p_tenant AND occurred_at < p_before ORDER BY seq DESC LIMIT 1;
    IF v_seq IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM public.audit_auditevent WHERE tenant_id = p_tenant AND seq <= v_seq;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    INSERT INTO public.audit_auditcheckpoint (tenant_id, purged_through_seq, hash_at_seq, purged_count, created_at)
        VALUES (p_tenant, v_seq, v_hash, v_count, now());
    RETURN v_count;
END $$;
REVOKE ALL ON FUNCTION audit_purge(bigint, timestamptz) FROM PUBLIC;
