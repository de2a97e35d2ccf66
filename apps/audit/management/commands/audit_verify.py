"""`manage.py audit_verify [--tenant SLUG [--from-seq N] [--to-seq N] [--anchors-from EXPORT ...]]
[--export FILE]`: exit 1 on any break.

Chains are checked against the signed heads anchored in the control database and, with --anchors-from, in
export manifests kept elsewhere (which still catch a truncated tail if the control database was altered too).
"""

from __future__ import annotations

import json
import zipfile
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
        parser.add_argument("--from-seq", type=int, help="With --tenant: verify from this event on.")
        parser.add_argument("--to-seq", type=int, help="With --tenant: verify up to this event.")
        parser.add_argument(
            "--anchors-from",
            type=Path,
            action="append",
            default=[],
            help="With --tenant: also check the chain against the anchor in this export's manifest.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["export"]:
            if not options["export"].exists():
                raise CommandError(f"{options['export']} does not exist.")
            result = audit_verify_export(options["export"], public_key=options["public_key"])
            if not result.ok:
                raise CommandError(f"export: BROKEN: {result.reason}")
            if result.kind:
                self.stdout.write(f"export: ok (signed {result.kind} document)")
                return
            self.stdout.write(f"export: ok ({result.checked} events)")
            return
        if options["anchors_from"] and not options["tenant"]:
            raise CommandError("--anchors-from needs --tenant.")
        span = {"from_seq": options["from_seq"], "to_seq": options["to_seq"]}
        if (span["from_seq"] is not None or span["to_seq"] is not None) and not options["tenant"]:
            raise CommandError("--from-seq and --to-seq need --tenant.")
        export_anchors = [self._export_anchor(path) for path in options["anchors_from"]]
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
            if tenant is None:
                result = audit_verify_chain()
            else:
                result = audit_verify_chain(tenant=tenant, export_anchors=export_anchors, **span)
            if result.ok:
                self.stdout.write(f"{name}: ok ({result.checked} events)")
            else:
                broken.append(name)
                self.stdout.write(f"{name}: BROKEN at #{result.broken_seq}: {result.reason}")
        if broken:
            raise CommandError(f"broken chain(s): {', '.join(broken)}")

    def _export_anchor(self, path: Path) -> dict[str, Any]:
        try:
            with zipfile.ZipFile(path) as zf:
                anchor = json.loads(zf.read("manifest.json")).get("anchor")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            raise CommandError(f"{path} is not an audit export.") from None
        if not isinstance(anchor, dict):
            raise CommandError(f"{path} carries no anchor (exported before anchors existed?).")
        return anchor
