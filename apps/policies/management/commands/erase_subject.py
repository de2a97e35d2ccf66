"""`manage.py erase_subject --tenant SLUG (--email X | --phone X | --external-id X) [--actor USERNAME]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import HubError
from apps.policies.services import erase_subject
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = "Erase one person's data in a tenant and print the report (the audit log keeps a pseudonym)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--email")
        parser.add_argument("--phone")
        parser.add_argument("--external-id", dest="external_id")
        parser.add_argument("--actor", help="Username recorded as the actor in the audit log.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.select_related("home_region").filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        actor = None
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"No user {options['actor']!r}.")
        try:
            report = erase_subject(
                tenant=tenant,
                email=options["email"],
                phone=options["phone"],
                external_id=options["external_id"],
                actor=actor,
            )
        except HubError as exc:
            raise CommandError(str(exc)) from exc
        for category, count in report.counts.items():
            self.stdout.write(f"{category}: {count}")
        for kind, value in report.pseudonyms.items():
            self.stdout.write(f"pseudonym ({kind}): {value}")
        self.stdout.write(self.style.SUCCESS(f"Erased {report.total} items in tenant {tenant.slug}."))
