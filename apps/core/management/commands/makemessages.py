"""`makemessages` that also extracts `N_(...)`: strings marked with `gettext_noop as N_` and translated later.

xgettext only knows the names Django passes it (`_`, `gettext_noop`, ...); without `--keyword=N_` the chat
replies marked `N_` were never extracted, so every customer got them in English.
"""

from __future__ import annotations

from django.core.management.commands import makemessages


class Command(makemessages.Command):
    xgettext_options = [*makemessages.Command.xgettext_options, "--keyword=N_"]
