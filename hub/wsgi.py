"""WSGI entry point (gunicorn hub.wsgi): the Django application behind the admission gate.

The gate (apps/core/admission.py) refuses work beyond what this process can serve with a quick 503 instead
of letting it queue; health, readiness and metrics pass untouched.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
django_application = get_wsgi_application()

from apps.core.admission import admission_wrap  # noqa: E402 - needs the settings and apps loaded above
from apps.core.deadlines import process_class_set  # noqa: E402 - after setup

process_class_set("chat")  # connections default to the chat budget; other requests SET theirs
application = admission_wrap(django_application)
