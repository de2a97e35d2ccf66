"""Form helpers shared by console views."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from apps.core.errors import HubError, ValidationFailed


def add_service_errors(form: forms.BaseForm, exc: HubError | ValidationError) -> None:
    """Show a service's refusal on the form: field errors next to fields, the rest at the top."""
    if isinstance(exc, ValidationFailed) and exc.errors:
        for field, messages in exc.errors.items():
            for message in messages:
                form.add_error(field if field in form.fields else None, message)
    elif isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
    else:
        form.add_error(None, exc.messages[0] if isinstance(exc, ValidationError) else str(exc))
