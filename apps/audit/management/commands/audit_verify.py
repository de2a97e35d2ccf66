"""`manage.py audit_verify [--tenant SLUG] [--export FILE]`: verify the chains; exit 1 on any break."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.selectors import audit_verify_chain, audit_verify_export
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = "Verify the audit hash chains (every tenant and the platform), or an export file offline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="Only this tenant's chain.")
        parser.add_argument("--export", type=Path, help="Verify an export zip (signature, digest, hashes).")
        parser.add_argument(
            "--public-key", help="Base64 Ed25519 public key to trust (default: the manifest's)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["export"]:
            if not options["export"].exists():
                raise CommandError(f"{options['export']} does not exist.")
            result = audit_verify_export(options["export"], public_key=options["public_key"])
            if not result.ok:
                raise CommandError(f"export: BROKEN: {result.reason}")
            self.stdout.write(f"export: ok ({result.checked} events)")
            return
        tenants = Tenant.objects.select_related("home_region").order_by("slug")
        if options["tenant"]:
            tenants = tenants.filter(slug=options["tenant"])
            if not tenants.exists():
                raise CommandError(f"No tenant with slug {options['tenant']!r}.")
        broken = []
        chains: list[tuple[str, Any]] = [(t.slug, t) for t in tenants]
        if not options["tenant"]:
            chains.insert(0, ("platform", None))
        for name, tenant in chains:
            result = audit_verify_chain(tenant=tenant)
            if result.ok:
                self.stdout.write(f"{name}: ok ({result.checked} events)")
            else:
                broken.append(name)
                self.stdout.write(f"{name}: BROKEN at #{result.broken_seq}: {result.reason}")
        if broken:
            raise CommandError(f"broken chain(s): {', '.join(broken)}")
