"""`manage.py services up|down|status`: the embedded PostgreSQL and Redis for development and tests."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.embedded import EmbeddedServices, ServiceError


class Command(BaseCommand):
    help = "Start, stop or report the embedded PostgreSQL (pgvector) and Redis servers."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["up", "down", "status"])
        parser.add_argument("--ephemeral", action="store_true", help="Trade durability for speed (tests).")
        parser.add_argument(
            "--free-ports", action="store_true", help="Pick free ports instead of the defaults."
        )
        parser.add_argument("--purge", action="store_true", help="With down: delete the data as well.")
        parser.add_argument("--json", action="store_true", help="With status: print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        services = EmbeddedServices(settings.HUB_HOME, settings.HUB_REGIONS, log=self.stdout.write)
        try:
            if options["action"] == "up":
                services.up(ephemeral=options["ephemeral"], free_ports=options["free_ports"])
            elif options["action"] == "down":
                services.down(purge=options["purge"])
            else:
                report = services.status()
                if options["json"]:
                    self.stdout.write(json.dumps(report))
                else:
                    for name, entry in report.items():
                        state = (
                            f"running on port {entry['port']} (pid {entry['pid']})"
                            if entry["running"]
                            else "stopped"
                        )
                        self.stdout.write(f"{name}: {state}")
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
