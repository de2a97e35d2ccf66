"""`manage.py simulators up|down|status [--json]`: the vendor simulators as one background process.

A thin wrapper over connectors.simulators; state (pid, descriptions, local CA) lives in HUB_HOME/simulators.

`manage.py simulators agent-reply <vendor> <ticket> "text" [--private] [--resolve|--close]` plays a support
agent on a running ticketing simulator (servicenow, salesforce, hubspot): it comments on the ticket (by
number, vendor id or the hub's external id) and/or changes its state through the simulator's
`__admin/agent` endpoint, which announces it to the hub's webhook when one is registered.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.integrations.conf import simulators_state_dir
from connectors import simulators
from connectors.simulation import SimulatorAdminError, admin_post

TICKET_VENDORS = ("servicenow", "salesforce", "hubspot")


class Command(BaseCommand):
    help = "Start, stop or describe the Salesforce, HubSpot, ServiceNow and SAP simulators."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("up", "down", "status", "agent-reply"))
        parser.add_argument(
            "reply",
            nargs="*",
            metavar="VENDOR TICKET TEXT",
            help="agent-reply: vendor, ticket, comment text.",
        )
        parser.add_argument("--private", action="store_true", help="agent-reply: an internal note.")
        outcome = parser.add_mutually_exclusive_group()
        outcome.add_argument("--resolve", action="store_true", help="agent-reply: resolve the ticket.")
        outcome.add_argument("--close", action="store_true", help="agent-reply: close the ticket.")
        parser.add_argument(
            "--json", action="store_true", help="Print base URLs and demo credentials as JSON."
        )
        parser.add_argument("--count", type=int, help="Records per main object (default 10,000).")

    def handle(self, *args: Any, **options: Any) -> None:
        state = simulators_state_dir()
        action = options["action"]
        if action == "agent-reply":
            self.agent_reply(state, options)
            return
        if options["reply"]:
            raise CommandError(f"unexpected arguments for {action}: {' '.join(options['reply'])}")
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

    def agent_reply(self, state: Any, options: dict[str, Any]) -> None:
        """Comment on a ticket of a running simulator and/or resolve or close it, like an agent would."""
        args = options["reply"]
        if len(args) not in (2, 3):
            raise CommandError(
                'usage: simulators agent-reply <vendor> <ticket> "text" [--private] [--resolve|--close]'
            )
        vendor, ticket, text = args[0], args[1], (args[2] if len(args) == 3 else "")
        if vendor not in TICKET_VENDORS:
            raise CommandError(f"agent-reply works with {', '.join(TICKET_VENDORS)}, not {vendor!r}")
        new_state = "resolved" if options["resolve"] else "closed" if options["close"] else None
        if not text.strip() and new_state is None:
            raise CommandError("give the reply text, --resolve or --close")
        running = simulators.status(state)
        description = running["simulators"].get(vendor)
        if not running["running"] or description is None:
            raise CommandError("the simulators are not running: start them with `manage.py simulators up`")
        payload = {"ticket": ticket, "body": text, "public": not options["private"], "state": new_state}
        try:
            result = admin_post(description, "agent", payload)
        except SimulatorAdminError as exc:
            raise CommandError(f"{vendor}: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        what = "internal note" if options["private"] else "public comment"
        done = [f"{what} {result['comment_id']}"] if result.get("comment_id") else []
        if new_state:
            done.append(f"state {result.get('state')}")
        self.stdout.write(f"{vendor} ticket {result.get('number') or result['ticket']}: {', '.join(done)}")
        hook = result.get("webhook") or {}
        if hook.get("url") is None:
            self.stdout.write("  no webhook registered: the hub picks this up at its next poll")
        elif hook.get("status") is not None:
            self.stdout.write(f"  webhook delivered, the hub answered HTTP {hook['status']}")
        else:
            self.stdout.write(
                f"  webhook not delivered ({hook.get('error')}): the hub picks this up at its next poll"
            )
