"""`manage.py seed_demo [--json]`: an idempotent demo: operator, tenants acme (EU) and globex (US)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.console.demo import seed_demo


class Command(BaseCommand):
    help = "Create (or refresh) the demo data and print the demo logins. Refuses to run in production."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the demo credentials as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.HUB_ENV == "production":
            raise CommandError(
                "seed_demo refuses to run with production settings (it creates known passwords)."
            )
        demo = seed_demo()
        if options["json"]:
            self.stdout.write(json.dumps(demo, indent=2))
            return
        self.stdout.write("Demo logins:")
        for user in demo["users"]:
            where = f"{user['role']} @ {user['tenant']}" if user["tenant"] else user["role"]
            totp = f"  TOTP secret {user['totp_secret']}" if user["totp_secret"] else ""
            self.stdout.write(f"  {user['username']:<10} {user['password']:<20} {where}{totp}")
        for tenant in demo["tenants"]:
            self.stdout.write(f"  tenant {tenant['slug']} ({tenant['region']})")
            for key in tenant.get("api_keys", []):
                self.stdout.write(f"    chat API key of channel {key['channel']}: {key['key']}")
