"""`manage.py rotate_keys [--tenant SLUG] [--master | --destroy-retired]`: online key rotation, retirement."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.security.models import KeyRotation
from apps.security.services import (
    RetiredKeyInUse,
    data_keys_destroy_retired,
    rewrap_data_keys,
    rotate_data_key,
)
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Rotate per-tenant data keys (re-encrypting every value in batches while the hub serves), or with "
        "--master re-wrap the data keys under the current master key, or with --destroy-retired delete the "
        "material of retired data keys that no row uses any more."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="Only this tenant (slug); default: every tenant.")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--master", action="store_true", help="Re-wrap data keys under the current master key."
        )
        mode.add_argument(
            "--destroy-retired",
            action="store_true",
            help=(
                "Destroy retired data key versions after checking, in every database, that no row still "
                "uses them (run after a rotation that reported no failures)."
            ),
        )
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = Tenant.objects.select_related("home_region").order_by("slug")
        if options["tenant"]:
            tenants = tenants.filter(slug=options["tenant"])
            if not tenants.exists():
                raise CommandError(f"No tenant with slug {options['tenant']!r}.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["destroy_retired"]:
            self._destroy_retired(tenants)
            return
        failures = 0
        for tenant in tenants:
            if options["master"]:
                count = rewrap_data_keys(tenant=tenant)
                self.stdout.write(f"{tenant.slug}: re-wrapped {count} data key(s)")
                continue

            def progress(rotation: KeyRotation, slug: str = tenant.slug) -> None:
                self.stdout.write(f"{slug}: {rotation.rows_done}/{rotation.rows_total} re-encrypted")

            rotation = rotate_data_key(tenant=tenant, batch_size=options["batch_size"], on_progress=progress)
            failures += rotation.failures
            self.stdout.write(
                f"{tenant.slug}: now on data key v{rotation.to_version}; {rotation.rows_done} value(s) "
                f"re-encrypted, {rotation.failures} failure(s)"
            )
        if failures:
            raise CommandError(
                f"{failures} value(s) could not be decrypted; they keep their old key version."
            )

    def _destroy_retired(self, tenants: Any) -> None:
        refused = []
        for tenant in tenants:
            try:
                versions = data_keys_destroy_retired(tenant=tenant)
            except RetiredKeyInUse as exc:
                refused.append(tenant.slug)
                self.stderr.write(f"{tenant.slug}: refused, {exc}")
                continue
            if versions:
                names = ", ".join(f"v{v}" for v in versions)
                self.stdout.write(f"{tenant.slug}: destroyed data key {names}")
            else:
                self.stdout.write(f"{tenant.slug}: no retired data key")
        if refused:
            raise CommandError(
                f"Retired data keys of {', '.join(refused)} are still in use and were kept: run "
                "`rotate_keys` for them until it reports no failures, then destroy again."
            )
