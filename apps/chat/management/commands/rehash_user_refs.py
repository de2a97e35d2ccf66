"""`manage.py rehash_user_refs [--tenant SLUG]`: re-key stored user reference hashes with the current key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.chat.retention import user_ref_rehash
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Rewrite every conversation's user reference hash under the current HUB_USER_REF_KEYS key (after "
        "adding a new key first in the list, or once after upgrading from SECRET_KEY-keyed hashes); then the "
        "previous keys can be removed from the setting."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="Only this tenant (slug); default: every tenant.")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = Tenant.objects.select_related("home_region").order_by("slug")
        if options["tenant"]:
            tenants = tenants.filter(slug=options["tenant"])
            if not tenants.exists():
                raise CommandError(f"No tenant with slug {options['tenant']!r}.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        for tenant in tenants:
            changed = user_ref_rehash(tenant=tenant, batch_size=options["batch_size"])
            self.stdout.write(f"{tenant.slug}: {changed} user reference hash(es) rewritten")
