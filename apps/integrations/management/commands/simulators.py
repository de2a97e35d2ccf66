"""`manage.py simulators up|down|status [--json]`: the vendor simulators as one background process.

A thin wrapper over connectors.simulators; state (pid, descriptions, local CA) lives in HUB_HOME/simulators.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.integrations.conf import simulators_state_dir
from connectors import simulators


class Command(BaseCommand):
    help = "Start, stop or describe the Salesforce, HubSpot, ServiceNow and SAP simulators."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("up", "down", "status"))
        parser.add_argument(
            "--json", action="store_true", help="Print base URLs and demo credentials as JSON."
        )
        parser.add_argument("--count", type=int, help="Records per main object (default 10,000).")

    def handle(self, *args: Any, **options: Any) -> None:
        state = simulators_state_dir()
        action = options["action"]
        if action == "up":
            counts = (
                dict.fromkeys(("contacts", "accounts", "tickets", "orders"), options["count"])
                if options["count"]
                else None
            )
            try:
                result: dict[str, Any] = {"running": True, "simulators": simulators.up(state, counts=counts)}
            except (RuntimeError, TimeoutError) as exc:
                raise CommandError(str(exc)) from exc
        elif action == "down":
            result = {"running": False, "stopped": simulators.down(state)}
        else:
            result = simulators.status(state)
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        elif action == "down":
            self.stdout.write("simulators stopped" if result["stopped"] else "simulators were not running")
        else:
            self.stdout.write("simulators running" if result["running"] else "simulators stopped")
            for vendor, description in result["simulators"].items():
                self.stdout.write(f"  {vendor:<11} {description['base_url']}")
