"""Console pages of a channel's outward setup (issue 17): platform account and its test, widget key, allowed
origins, identity, and the widget's live preview. Thin: the forms shape input, apps/chat/services/
channel_setup.py validates, checks the role and audits. Secrets shown once go out with no-store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csp.constants import SELF
from csp.decorators import csp_replace
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.chat.forms import (
    ApiKeyForm,
    ChannelForm,
    IdentityForm,
    OriginsForm,
    PlatformForm,
    RotateForm,
)
from apps.chat.models import ApiKey, Channel, ChannelKind
from apps.chat.selectors.channels import api_key_list, api_key_state
from apps.chat.selectors.delivery import channel_delivery
from apps.chat.services.channel_setup import (
    IDENTITY_KINDS,
    PLATFORM_KINDS,
    channel_identity_secret_generate,
    channel_platform_set,
    channel_platform_test,
    channel_setup_update,
    channel_webhook_url,
    channel_widget_key_rotate,
    identity_secret_is_set,
    platform_connection,
    widget_script_url,
    widget_snippet,
)
from apps.chat.services.delivery import held_messages_retry
from apps.core.confirm import Confirmation, confirmation_required
from apps.core.context import tenant_context
from apps.core.errors import HubError
from apps.core.forms import add_service_errors
from apps.integrations.conf import connector_class
from apps.integrations.selectors.connections import secrets_status

#: Where to paste the webhook URL, per platform: three short steps each.
PASTE_HELP: dict[str, list[Any]] = {
    ChannelKind.WHATSAPP: [
        gettext_lazy("Meta for Developers → your app → WhatsApp → Configuration → Webhook: Edit."),
        gettext_lazy("Paste this URL as the Callback URL and enter the verify token you set here."),
        gettext_lazy("Verify and save, then subscribe to the “messages” webhook field."),
    ],
    ChannelKind.SLACK: [
        gettext_lazy("api.slack.com/apps → your app → Event Subscriptions: turn events on."),
        gettext_lazy("Paste this URL as the Request URL; Slack checks it at once."),
        gettext_lazy("Subscribe to the bot events message.im and app_mention, save, reinstall the app."),
    ],
    ChannelKind.TEAMS: [
        gettext_lazy("Azure portal → your Azure Bot resource → Configuration."),
        gettext_lazy("Paste this URL as the Messaging endpoint and apply."),
        gettext_lazy("Channels → add Microsoft Teams, then install the bot in Teams."),
    ],
    ChannelKind.SMS: [
        gettext_lazy("Twilio Console → Phone Numbers → Manage → Active numbers → your number."),
        gettext_lazy("Messaging configuration: “A message comes in” → Webhook, HTTP POST."),
        gettext_lazy("Paste this URL exactly as shown: Twilio signs the exact URL it calls."),
    ],
}


def platform_form(channel: Channel, data: Any = None) -> PlatformForm | None:
    """The platform-account form of a platform channel (bound to `data` when given), else None."""
    if channel.kind not in PLATFORM_KINDS:
        return None
    connection = platform_connection(channel)
    if connection is not None and connection.kind != channel.kind:
        connection = None
    with tenant_context(channel.tenant):
        secrets_set = secrets_status(connection) if connection is not None else None
    return PlatformForm(
        data,
        prefix="platform",
        connector=connector_class(channel.kind),
        connection=connection,
        secrets_set=secrets_set,
        initial={"endpoint_region": channel.tenant.region_code},
    )


def setup_context(
    request: HttpRequest,
    channel: Channel,
    *,
    platform: PlatformForm | None = None,
    origins: OriginsForm | None = None,
    identity: IdentityForm | None = None,
) -> dict[str, Any]:
    """What the channel page shows about the channel's outward setup."""
    context: dict[str, Any] = {
        "is_platform": channel.kind in PLATFORM_KINDS,
        "is_web": channel.kind == ChannelKind.WEB,
        "has_identity": channel.kind in IDENTITY_KINDS,
    }
    if context["has_identity"]:
        context["identity_secret_set"] = identity_secret_is_set(channel)
    if context["is_platform"]:
        context |= {
            "platform_form": platform or platform_form(channel),
            "connection": platform_connection(channel),
            "webhook_url": channel_webhook_url(channel, request),
            "paste_help": PASTE_HELP.get(channel.kind, []),
            "delivery": channel_delivery(channel=channel),
        }
    if context["is_web"]:
        context |= {
            "snippet": widget_snippet(channel, request),
            "origins_form": origins
            or OriginsForm(initial={"allowed_origins": "\n".join(channel.allowed_origins or [])}),
        }
    if context["has_identity"]:
        context["identity_form"] = identity or IdentityForm(initial={"identity_mode": channel.identity_mode})
    return context


def _reload(channel: Channel) -> None:
    with tenant_context(channel.tenant):  # the identity secret decrypts with the tenant's key
        channel.refresh_from_db()


def _back(channel: Channel) -> HttpResponse:
    return redirect("chat:channel-detail", tenant_slug=channel.tenant.slug, pk=channel.pk)


def _key_rows(channel: Channel) -> list[tuple[ApiKey, str]]:
    return [(key, api_key_state(key)) for key in api_key_list(channel=channel)]


def channel_page(
    request: HttpRequest,
    channel: Channel,
    *,
    form: ChannelForm | None = None,
    key_form: ApiKeyForm | None = None,
    setup: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The channel page: settings, setup, keys (bound forms, with their errors, replace the blank ones)."""
    context = {
        "channel": channel,
        "form": form or ChannelForm(tenant=request.tenant, channel=channel),  # type: ignore[attr-defined]
        "key_form": key_form or ApiKeyForm(),
        "rotate_form": RotateForm(),
        "key_rows": _key_rows(channel),
        **setup_context(request, channel, **(setup or {})),
    }
    return render(request, "chat/channel_detail.html", context, status=status)


def _detail_with(request: HttpRequest, channel: Channel, **forms: Any) -> HttpResponse:
    return channel_page(request, channel, setup=forms, status=400)


def channel_platform_view(request: HttpRequest, channel: Channel) -> HttpResponse:
    form = platform_form(channel, request.POST)
    if form is None:
        return _back(channel)
    if form.is_valid():
        data = form.platform_data()
        try:
            channel_platform_set(
                channel=channel,
                settings_=data["settings"],
                credentials=data["credentials"],
                endpoint_region=data["endpoint_region"],
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Platform account saved. Use “Test” to check it with the platform."))
            return _back(channel)
    return _detail_with(request, channel, platform=form)


def channel_platform_test_view(request: HttpRequest, channel: Channel) -> HttpResponse:
    result = channel_platform_test(channel=channel, actor=request.user, request=request)
    if result.ok:
        messages.success(request, result.message)
    else:
        messages.error(request, _("Test failed: %(message)s") % {"message": result.message})
    return _back(channel)


def channel_undelivered_retry_view(request: HttpRequest, channel: Channel) -> HttpResponse:
    """Send the channel's held messages again (e.g. after setting a WhatsApp template for late replies)."""
    result = held_messages_retry(channel=channel, actor=request.user, request=request)
    if result.held:
        messages.warning(
            request,
            _("%(sent)d sent, %(held)d still held: see why under “Undelivered messages”.")
            % {"sent": result.sent, "held": result.held},
        )
    else:
        messages.success(request, _("%(sent)d held messages sent again.") % {"sent": result.sent})
    return _back(channel)


def channel_origins_view(request: HttpRequest, channel: Channel) -> HttpResponse:
    form = OriginsForm(request.POST)
    if form.is_valid():
        origins = form.cleaned_data["allowed_origins"].splitlines()
        try:
            channel_setup_update(
                channel=channel, allowed_origins=origins, actor=request.user, request=request
            )
        except (HubError, ValidationError) as exc:
            _reload(channel)
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Allowed origins saved."))
            return _back(channel)
    return _detail_with(request, channel, origins=form)


def channel_identity_view(request: HttpRequest, channel: Channel) -> HttpResponse:
    form = IdentityForm(request.POST)
    if form.is_valid():
        try:
            channel_setup_update(
                channel=channel,
                identity_mode=form.cleaned_data["identity_mode"],
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            _reload(channel)
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Identity settings saved."))
            return _back(channel)
    return _detail_with(request, channel, identity=form)


def channel_identity_secret_view(request: HttpRequest, channel: Channel) -> HttpResponse:
    """Generate the identity secret (confirmed first when one exists) and show it once."""
    has_secret = identity_secret_is_set(channel)
    if has_secret or request.method != "POST":
        page = confirmation_required(
            request,
            Confirmation(
                title=_("Generate identity secret"),
                object_name=channel.name,
                consequence=_(
                    "A new secret replaces the current one at once: user hashes and tokens your site signs "
                    "with the old secret are refused until it uses the new one."
                )
                if has_secret
                else _("The secret is shown once; store it in your site's server configuration."),
                button=_("Generate secret"),
                cancel_url=reverse("chat:channel-detail", args=[channel.tenant.slug, channel.pk]),
            ),
        )
        if page is not None:
            return page
    try:
        secret = channel_identity_secret_generate(channel=channel, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
        return _back(channel)
    response = render(
        request, "chat/identity_secret.html", {"channel": channel, "secret": secret}, status=201
    )
    response["Cache-Control"] = "no-store"
    return response


def channel_widget_rotate_view(request: HttpRequest, channel: Channel) -> HttpResponse:
    if channel.widget_key:
        page = confirmation_required(
            request,
            Confirmation(
                title=_("Rotate widget key"),
                object_name=channel.name,
                consequence=_(
                    "The current key stops at once: every site must embed the new snippet before its widget "
                    "works again."
                ),
                button=_("Rotate key"),
                cancel_url=reverse("chat:channel-detail", args=[channel.tenant.slug, channel.pk]),
            ),
        )
        if page is not None:
            return page
    try:
        channel_widget_key_rotate(channel=channel, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("New widget key issued: update the snippet on your sites."))
    return _back(channel)


@xframe_options_sameorigin
@csp_replace({"frame-ancestors": [SELF]})  # type: ignore[arg-type]  # a (request, channel) view
def channel_preview_view(request: HttpRequest, channel: Channel) -> HttpResponse:
    """A bare page embedding the widget snippet, framed by the channel page (same origin only)."""
    return render(
        request, "chat/widget_preview.html", {"channel": channel, "script_url": widget_script_url(request)}
    )


#: Route name -> (view taking the request and the tenant's channel, HTTP-method decorator).
ROUTES: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "platform": (channel_platform_view, require_POST),
    "platform-test": (channel_platform_test_view, require_POST),
    "undelivered-retry": (channel_undelivered_retry_view, require_POST),
    "origins": (channel_origins_view, require_POST),
    "identity": (channel_identity_view, require_POST),
    "identity-secret": (channel_identity_secret_view, require_http_methods(["GET", "POST"])),
    "widget-rotate": (channel_widget_rotate_view, require_http_methods(["GET", "POST"])),
    "preview": (channel_preview_view, require_GET),
}
