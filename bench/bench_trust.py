"""Trust-core throughput: audit appends with the hash chain, and envelope encryption, each next to a baseline.

(a) Audit append through `audit_record` (canonical JSON + SHA-256 link, per-tenant advisory lock, read of the
    chain head, insert, commit), one writer and four threads, against plain INSERTs of the same rows, one
    transaction each, into a scratch copy of the table (same columns and indexes, no trigger, no lock).
(b) `crypto.encrypt`/`crypto.decrypt` (data key lookup, AAD, nonce, base64 envelope) and VaultEntry rows
    through the EncryptedTextField, against raw AESGCM on the same payloads with the same AAD.

Runs against the dev services (HUB_HOME) in a throwaway tenant `bench-trust-<random>`. Audit rows are
append-only, so that tenant is deactivated at the end, not deleted; vault rows and the scratch table go.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from apps.audit.chain import HASHED_FIELDS  # pure module: safe before django.setup()

AUDIT_EVENTS = 2_000
THREADS = 4
CRYPTO_OPS = 5_000
VAULT_ROWS = 1_000
PAYLOAD_SIZES = (64, 4_096)  # a connector secret; a transcript-sized personal-data field
SCRATCH_COLUMNS = (*HASHED_FIELDS, "prev_hash", "hash")  # the baseline stores the same row shape


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _in_threads(work: Callable[[int], None], threads: int) -> float:
    """Run work(i) in `threads` threads at once; return the wall time. Each thread closes its connections."""
    from django.db import connections

    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def target(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=target, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


# --- (a) audit append ------------------------------------------------------------------------------------
def _bench_audit(tenant: Any) -> dict[str, Any]:
    from django.db import connections

    from apps.audit.models import AuditEvent
    from apps.audit.selectors import audit_verify_chain
    from apps.audit.services import audit_record
    from apps.core.context import tenant_context

    def record(n: int, offset: int = 0) -> None:
        for i in range(offset, offset + n):
            audit_record(
                "bench.event",
                tenant=tenant,
                target_type="thing",
                target_id=i,
                target_label=f"thing {i}",
                changes={"name": [f"old {i}", f"new {i}"], "api_token": "never-stored"},
            )

    record(50)  # warm up: connection, data structures
    start = time.perf_counter()
    record(AUDIT_EVENTS)
    single = time.perf_counter() - start
    per_thread = AUDIT_EVENTS // THREADS
    threaded = _in_threads(lambda i: record(per_thread, 10_000 * (i + 1)), THREADS)
    verify_start = time.perf_counter()
    verified = audit_verify_chain(tenant=tenant)
    verify_s = time.perf_counter() - verify_start
    if not verified.ok:
        raise RuntimeError(f"bench chain broken: {verified.reason}")

    # The same rows, inserted plainly: one INSERT and commit each, no chain, no lock, no trigger.
    alias = tenant.home_region.db_alias
    with tenant_context(tenant):
        rows = list(AuditEvent.objects.order_by("seq").values_list(*SCRATCH_COLUMNS)[: AUDIT_EVENTS + 50])
    scratch = f"bench_audit_{uuid.uuid4().hex[:8]}"
    placeholders = ", ".join(["%s"] * len(SCRATCH_COLUMNS))
    # The scratch name is generated here, never user input.
    insert = f"INSERT INTO {scratch} ({', '.join(SCRATCH_COLUMNS)}) VALUES ({placeholders})"  # noqa: S608
    from psycopg.types.json import Jsonb

    prepared = [(*row[:9], Jsonb(row[9]), *row[10:]) for row in rows]
    with connections[alias].cursor() as cursor:
        cursor.execute(f"CREATE TABLE {scratch} (LIKE audit_auditevent INCLUDING ALL)")
    try:

        def plain(batch: list[tuple[Any, ...]]) -> None:
            with connections[alias].cursor() as cursor:
                for row in batch:
                    cursor.execute(insert, row)  # autocommit: one transaction per row, like audit_record

        plain(prepared[:50])
        with connections[alias].cursor() as cursor:
            cursor.execute(f"TRUNCATE {scratch}")
        start = time.perf_counter()
        plain(prepared[50:])
        plain_single = time.perf_counter() - start
        with connections[alias].cursor() as cursor:
            cursor.execute(f"TRUNCATE {scratch}")
        body = prepared[50:]
        plain_threaded = _in_threads(lambda i: plain(body[i * per_thread : (i + 1) * per_thread]), THREADS)
    finally:
        with connections[alias].cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {scratch}")

    chain_1, chain_4 = _rate(AUDIT_EVENTS, single), _rate(per_thread * THREADS, threaded)
    base_1, base_4 = _rate(AUDIT_EVENTS, plain_single), _rate(per_thread * THREADS, plain_threaded)
    return {
        "events": AUDIT_EVENTS,
        "chain_events_per_s_1_writer": chain_1,
        "chain_events_per_s_4_threads": chain_4,
        "plain_insert_rows_per_s_1_writer": base_1,
        "plain_insert_rows_per_s_4_threads": base_4,
        "chain_over_plain_1_writer": round(chain_1 / base_1, 2),
        "chain_over_plain_4_threads": round(chain_4 / base_4, 2),
        "chain_ms_per_event_1_writer": round(single / AUDIT_EVENTS * 1000, 3),
        "verify_events_per_s": _rate(verified.checked, verify_s),
        "verified_events": verified.checked,
    }


# --- (b) encryption --------------------------------------------------------------------------------------
def _bench_crypto(tenant: Any) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from apps.core.context import tenant_context
    from apps.security import crypto
    from apps.security.keys import NONCE_BYTES
    from apps.security.models import VaultEntry

    results: dict[str, Any] = {}
    aad = f"{tenant.id}|bench.payload|value|{uuid.uuid4()}".encode()
    raw_key = AESGCM(AESGCM.generate_key(bit_length=256))
    with tenant_context(tenant):
        crypto.encrypt("warm-up", aad=aad)  # creates the tenant's data key and caches it
        for size in PAYLOAD_SIZES:
            payloads = [secrets.token_hex(size // 2) for _ in range(CRYPTO_OPS)]
            megabytes = size * CRYPTO_OPS / 1e6

            start = time.perf_counter()
            sealed = [crypto.encrypt(p, aad=aad) for p in payloads]
            enc = time.perf_counter() - start
            version = crypto.version_of(sealed[0])
            start = time.perf_counter()
            [crypto.encrypt(p, aad=aad, version=version) for p in payloads]
            enc_known = time.perf_counter() - start
            start = time.perf_counter()
            opened = [crypto.decrypt(c, aad=aad) for c in sealed]
            dec = time.perf_counter() - start
            if opened != payloads:
                raise RuntimeError("crypto round trip failed")

            start = time.perf_counter()
            raw_sealed = []
            for p in payloads:
                nonce = secrets.token_bytes(NONCE_BYTES)
                raw_sealed.append((nonce, raw_key.encrypt(nonce, p.encode(), aad)))
            raw_enc = time.perf_counter() - start
            start = time.perf_counter()
            raw_opened = [raw_key.decrypt(n, c, aad).decode() for n, c in raw_sealed]
            raw_dec = time.perf_counter() - start
            if raw_opened != payloads:
                raise RuntimeError("raw round trip failed")

            results[f"payload_{size}_bytes"] = {
                "ops": CRYPTO_OPS,
                "hub_encrypt_ops_per_s": _rate(CRYPTO_OPS, enc),
                # encrypt() reads the active key version from the database on every call; with the version
                # passed in, what remains is the envelope (nonce, AAD, base64) around AESGCM.
                "hub_encrypt_known_version_ops_per_s": _rate(CRYPTO_OPS, enc_known),
                "hub_decrypt_ops_per_s": _rate(CRYPTO_OPS, dec),
                "raw_aesgcm_encrypt_ops_per_s": _rate(CRYPTO_OPS, raw_enc),
                "raw_aesgcm_decrypt_ops_per_s": _rate(CRYPTO_OPS, raw_dec),
                "hub_encrypt_mb_per_s": round(megabytes / enc, 1),
                "raw_aesgcm_encrypt_mb_per_s": round(megabytes / raw_enc, 1),
                "hub_encrypt_us_per_op": round(enc / CRYPTO_OPS * 1e6, 2),
                "raw_aesgcm_encrypt_us_per_op": round(raw_enc / CRYPTO_OPS * 1e6, 2),
            }

        # Whole rows through the EncryptedTextField: insert (encrypt on save) and read (decrypt on access).
        values = [secrets.token_hex(PAYLOAD_SIZES[0] // 2) for _ in range(VAULT_ROWS)]
        kind = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            start = time.perf_counter()
            for value in values:
                VaultEntry.objects.create(token=uuid.uuid4().hex, kind=kind, value=value)
            create = time.perf_counter() - start
            start = time.perf_counter()
            read = [entry.value for entry in VaultEntry.objects.filter(kind=kind)]
            read_s = time.perf_counter() - start
            if sorted(read) != sorted(values):
                raise RuntimeError("vault round trip failed")
            start = time.perf_counter()
            ciphertexts = list(VaultEntry.objects.filter(kind=kind).values_list("value", flat=True))
            fetch_only = time.perf_counter() - start
        finally:
            VaultEntry.objects.filter(kind=kind).delete()
        results["vault_entry"] = {
            "rows": VAULT_ROWS,
            "payload_bytes": PAYLOAD_SIZES[0],
            "create_rows_per_s": _rate(VAULT_ROWS, create),
            "read_and_decrypt_rows_per_s": _rate(VAULT_ROWS, read_s),
            "read_ciphertext_only_rows_per_s": _rate(len(ciphertexts), fetch_only),
        }
    return results


def run() -> dict[str, Any]:
    _setup_django()
    from django.db import connections

    from apps.tenants.services import region_sync, tenant_create, tenant_update

    regions = {region.code: region for region in region_sync()}
    region = regions.get("eu") or next(iter(regions.values()))
    with connections[region.db_alias].cursor() as cursor:
        cursor.execute("SELECT to_regclass('audit_auditevent'), to_regclass('security_vaultentry')")
        if None in cursor.fetchone():
            raise RuntimeError("the region database is not migrated: run `manage.py migrate` first")
    slug = f"bench-trust-{uuid.uuid4().hex[:8]}"
    tenant = tenant_create(slug=slug, name="Benchmark (trust core)", home_region=region)
    try:
        audit = _bench_audit(tenant)
        encryption = _bench_crypto(tenant)
    finally:
        tenant_update(tenant=tenant, is_active=False)
    return {
        "tenant": slug,
        "region": region.code,
        "threads": THREADS,
        "audit_append": audit,
        "encryption": encryption,
    }
