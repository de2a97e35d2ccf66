"""WSGI entry point (gunicorn hub.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
application = get_wsgi_application()

from apps.core.deadlines import process_class_set  # noqa: E402 - after setup

process_class_set("chat")  # connections default to the chat budget; other requests SET theirs
