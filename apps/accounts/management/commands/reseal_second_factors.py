"""`manage.py reseal_second_factors`: re-seal TOTP seeds and backup-code keys under the current master key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.accounts.services import second_factor_secrets_reseal


class Command(BaseCommand):
    help = (
        "Re-seal every TOTP seed and backup-code key under the current (first) master key. Run it with "
        "`rotate_keys --master` after adding a master key, before removing the old one."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = second_factor_secrets_reseal()
        self.stdout.write(f"re-sealed {count} second-factor device(s)")
