"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
application = get_asgi_application()

from apps.core.deadlines import process_class_set  # noqa: E402 - after setup

process_class_set("chat")
