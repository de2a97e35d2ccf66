"""Console pages for chat channels and their API keys (admins: MANAGE_CHANNELS). Thin: forms shape input,
the services validate, check the role and audit.

A new key's plaintext is rendered into the response that creates it (never redirected, never stored), with
`Cache-Control: no-store`; htmx requests get it as a fragment next to the refreshed key table.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.audit.services import audit_record
from apps.chat.forms import (
    ApiKeyForm,
    ChannelForm,
    ConversationFilterForm,
    EnableForm,
    LlmProviderForm,
    PlatformForm,
    RotateForm,
)
from apps.chat.models import ApiKey, Channel, ChannelKind, LlmProviderConfig
from apps.chat.selectors.channels import api_key_get, api_key_list, api_key_state, channel_get, channel_list
from apps.chat.selectors.conversations import (
    channel_names,
    conversation_get,
    conversation_list,
    llm_provider_get,
    llm_provider_list,
    transcript,
)
from apps.chat.services.channel_setup import PLATFORM_KINDS, channel_create_with_platform
from apps.chat.services.channels import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    channel_set_enabled,
    channel_update,
)
from apps.chat.services.llm_config import FIELDS as LLM_FIELDS
from apps.chat.services.llm_config import llm_provider_delete, llm_provider_save
from apps.chat.setup_views import ROUTES as SETUP_ROUTES
from apps.chat.setup_views import channel_page
from apps.core.confirm import Confirmation, confirmation_required
from apps.core.context import tenant_context
from apps.core.errors import HubError, NotFound, ValidationFailed
from apps.core.forms import add_service_errors
from apps.integrations.conf import connector_class
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

PAGE_SIZE = 25
manage = tenant_permission_required(roles.MANAGE_CHANNELS)


def _channel(request: HttpRequest, pk: Any) -> Channel:
    try:
        return channel_get(tenant=request.tenant, pk=pk)  # type: ignore[attr-defined]
    except NotFound:
        raise Http404 from None


def _key(request: HttpRequest, pk: Any) -> ApiKey:
    try:
        return api_key_get(tenant=request.tenant, pk=pk)  # type: ignore[attr-defined]
    except NotFound:
        raise Http404 from None


def _key_rows(channel: Channel) -> list[tuple[ApiKey, str]]:
    return [(key, api_key_state(key)) for key in api_key_list(channel=channel)]


def _detail(
    request: HttpRequest,
    channel: Channel,
    *,
    form: ChannelForm | None = None,
    key_form: ApiKeyForm | None = None,
    status: int = 200,
) -> HttpResponse:
    return channel_page(request, channel, form=form, key_form=key_form, status=status)


def _issued(
    request: HttpRequest, channel: Channel, key: ApiKey, plaintext: str, *, rotated: bool
) -> HttpResponse:
    """Show a new key's plaintext once: a fragment for htmx (plus the refreshed key table), else a page."""
    context = {
        "channel": channel,
        "key": key,
        "plaintext": plaintext,
        "rotated": rotated,
        "key_rows": _key_rows(channel),
        "rotate_form": RotateForm(),
    }
    template = "chat/_key_issued.html" if request.htmx else "chat/key_issued.html"  # type: ignore[attr-defined]
    response = render(request, template, context, status=201)
    response["Cache-Control"] = "no-store"
    return response


@manage
@require_http_methods(["GET"])
def channel_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    page = Paginator(channel_list(tenant=request.tenant), PAGE_SIZE).get_page(request.GET.get("page"))  # type: ignore[attr-defined]
    return render(request, "chat/channel_list.html", {"page_obj": page})


def _entered(request: HttpRequest, platform: PlatformForm) -> bool:
    """Whether any platform setting or credential was typed in (the region alone does not count)."""
    names = [platform.add_prefix(f.name) for f in platform.connector.config_schema]
    defaults = {platform.add_prefix(f.name): str(f.default or "") for f in platform.connector.config_schema}
    return any(request.POST.get(n, "").strip() not in ("", defaults[n]) for n in names)


@manage
@require_http_methods(["GET", "POST"])
def channel_create_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Create a channel of the kind chosen by ?kind= (platform kinds ask for their account at once)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    kind = request.POST.get("kind") or request.GET.get("kind") or ChannelKind.WEB
    if kind not in ChannelKind.values:
        kind = ChannelKind.WEB
    form = ChannelForm(request.POST or None, tenant=tenant, initial={"kind": kind})
    form.fields["kind"].widget = forms.HiddenInput()
    platform: PlatformForm | None = None
    if kind in PLATFORM_KINDS:
        platform = PlatformForm(
            request.POST or None,
            prefix="platform",
            connector=connector_class(kind),
            initial={"endpoint_region": tenant.region_code},
        )
    shown = platform
    if platform is not None and request.method == "POST" and not _entered(request, platform):
        platform = None  # nothing entered: the channel is created "not set up", its page asks for it
    if request.method == "POST" and form.is_valid() and (platform is None or platform.is_valid()):
        data = form.channel_data()
        data["kind"] = kind
        try:
            channel = channel_create_with_platform(
                tenant=tenant,
                channel_data=data,
                platform=platform.platform_data() if platform is not None else None,
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            platform_errors = isinstance(exc, ValidationFailed) and platform is not None
            if platform_errors and set(exc.errors or {}) & set(platform.fields):  # type: ignore[union-attr]
                add_service_errors(platform, exc)  # type: ignore[arg-type]
            else:
                add_service_errors(form, exc)
        else:
            messages.success(
                request,
                _("Channel “%(name)s” created. Create its first API key below.") % {"name": channel.name},
            )
            return redirect("chat:channel-detail", tenant_slug=tenant.slug, pk=channel.pk)
    context = {
        "form": form,
        "platform_form": shown,
        "kind": kind,
        "kind_label": ChannelKind(kind).label,
        "kinds": ChannelKind.choices,
    }
    has_errors = bool(form.errors or (platform is not None and platform.errors))
    return render(request, "chat/channel_form.html", context, status=400 if has_errors else 200)


@manage
@require_http_methods(["GET", "POST"])
def channel_detail_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """The channel's settings (a form) and its keys."""
    tenant = request.tenant  # type: ignore[attr-defined]
    channel = _channel(request, pk)
    if request.method != "POST":
        return _detail(request, channel)
    form = ChannelForm(request.POST, tenant=tenant, channel=channel)
    if form.is_valid():
        try:
            channel_update(channel=channel, changes=form.channel_data(), actor=request.user, request=request)
        except (HubError, ValidationError) as exc:
            with tenant_context(tenant):  # an identity secret decrypts with the tenant's key
                channel.refresh_from_db()
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Channel “%(name)s” saved.") % {"name": channel.name})
            return redirect("chat:channel-detail", tenant_slug=tenant.slug, pk=channel.pk)
    return _detail(request, channel, form=form, status=400)


@manage
@require_http_methods(["GET", "POST"])
def channel_enable_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Enable at once; disabling (every key refused) is confirmed first."""
    channel = _channel(request, pk)
    form = EnableForm(request.POST)
    form.is_valid()
    enabled = request.method == "POST" and bool(form.cleaned_data.get("enabled"))
    if not enabled:
        page = confirmation_required(
            request,
            Confirmation(
                title=_("Disable channel"),
                object_name=channel.name,
                consequence=_(
                    "Every API key of this channel is refused (403) until you enable it again: the channel "
                    "stops answering its users."
                ),
                button=_("Disable channel"),
                cancel_url=reverse("chat:channel-detail", args=[tenant_slug, channel.pk]),
            ),
        )
        if page is not None:
            return page
    channel_set_enabled(channel=channel, enabled=enabled, actor=request.user, request=request)
    text = (
        _("Channel “%(name)s” enabled: its keys work again.")
        if enabled
        else _("Channel “%(name)s” disabled: its keys are refused until you enable it.")
    )
    messages.success(request, text % {"name": channel.name})
    return redirect("chat:channel-detail", tenant_slug=tenant_slug, pk=channel.pk)


@manage
@require_POST
def key_create_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    channel = _channel(request, pk)
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            key, plaintext = api_key_create(
                channel=channel,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at(),
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            return _issued(request, channel, key, plaintext, rotated=False)
    if request.htmx:  # type: ignore[attr-defined]
        # htmx swaps only 2xx answers: send the form with its errors back into its own place.
        response = render(request, "chat/_key_form.html", {"channel": channel, "key_form": form})
        response["HX-Retarget"] = "#key-form"
        return response
    return _detail(request, channel, key_form=form, status=400)


def _key_label(key: ApiKey) -> str:
    return _("Key “%(name)s” (%(prefix)s…)") % {"name": key.name, "prefix": key.prefix}


@manage
@require_http_methods(["GET", "POST"])
def key_revoke_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    key = _key(request, pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Revoke API key"),
            object_name=_key_label(key),
            consequence=_(
                "Every call with this key is refused from now on. This cannot be undone: clients that use it "
                "need a new key."
            ),
            button=_("Revoke key"),
            cancel_url=reverse("chat:channel-detail", args=[tenant_slug, key.channel_id]),
        ),
    )
    if page is not None:
        return page
    api_key_revoke(key=key, actor=request.user, request=request)
    messages.success(
        request,
        _("Key “%(name)s” (%(prefix)s…) revoked: it is refused from now on.")
        % {"name": key.name, "prefix": key.prefix},
    )
    return redirect("chat:channel-detail", tenant_slug=tenant_slug, pk=key.channel_id)


@manage
@require_http_methods(["GET", "POST"])
def key_rotate_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Confirm (the overlap chosen in the key table comes along), then issue the successor once."""
    key = _key(request, pk)
    form = RotateForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        messages.error(request, _("Choose how long the old key keeps working."))
        return redirect("chat:channel-detail", tenant_slug=tenant_slug, pk=key.channel_id)
    hours = form.cleaned_data["overlap_hours"]
    overlap = dict(RotateForm.OVERLAP_CHOICES)[str(hours)]
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Rotate API key"),
            object_name=_key_label(key),
            consequence=(
                _("A new key is issued and shown once. The old key is refused from now on.")
                if not hours
                else _(
                    "A new key is issued and shown once. The old key keeps working for %(overlap)s, then it "
                    "is refused."
                )
                % {"overlap": overlap}
            ),
            button=_("Rotate key"),
            cancel_url=reverse("chat:channel-detail", args=[tenant_slug, key.channel_id]),
            fields={"overlap_hours": hours},
        ),
    )
    if page is not None:
        return page
    try:
        new_key, plaintext = api_key_rotate(
            key=key,
            overlap=timedelta(hours=form.cleaned_data["overlap_hours"]),
            actor=request.user,
            request=request,
        )
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("chat:channel-detail", tenant_slug=tenant_slug, pk=key.channel_id)
    return _issued(request, key.channel, new_key, plaintext, rotated=True)


# --- conversations (transcripts hold personal data: reading one is audited) ---------------------------
view_transcripts = tenant_permission_required(roles.VIEW_TRANSCRIPTS)


@view_transcripts
@require_http_methods(["GET"])
def conversation_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    names = channel_names(tenant=tenant)
    form = ConversationFilterForm(request.GET or None, channels=names)
    filters = form.cleaned_data if form.is_valid() else {}
    queryset = conversation_list(channel_id=filters.get("channel") or None, status=filters.get("status", ""))
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    for conversation in page:
        conversation.channel_name = names.get(str(conversation.channel_id), "")  # type: ignore[attr-defined]
    return render(request, "chat/conversation_list.html", {"page_obj": page, "form": form})


@view_transcripts
@require_http_methods(["GET"])
def conversation_detail_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    try:
        conversation = conversation_get(pk=pk)
    except NotFound:
        raise Http404 from None
    audit_record(
        "chat.transcript_viewed",
        tenant=tenant,
        actor=request.user,
        request=request,
        target_type="conversation",
        target_id=str(conversation.pk),
        target_label=str(conversation.pk)[:8],
    )
    context = {
        "conversation": conversation,
        "channel_name": channel_names(tenant=tenant).get(str(conversation.channel_id), ""),
        **transcript(conversation=conversation),
    }
    return render(request, "chat/conversation_detail.html", context)


# --- language-model providers ---------------------------------------------------------------------------
def _provider(pk: Any) -> LlmProviderConfig:
    try:
        return llm_provider_get(pk=pk)
    except NotFound:
        raise Http404 from None


def _provider_data(form: LlmProviderForm) -> dict[str, Any]:
    return {k: v for k, v in form.cleaned_data.items() if k != "api_key"}


@manage
@require_http_methods(["GET"])
def llm_provider_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    return render(request, "chat/llm_provider_list.html", {"providers": list(llm_provider_list())})


@manage
@require_http_methods(["GET", "POST"])
def llm_provider_edit_view(request: HttpRequest, tenant_slug: str, pk: Any = None) -> HttpResponse:
    """Create (no pk) or edit a provider; the API key is write-only and kept when left empty."""
    tenant = request.tenant  # type: ignore[attr-defined]
    config = _provider(pk) if pk is not None else None
    initial = {f: getattr(config, f) for f in LLM_FIELDS} if config else {"enabled": True}
    form = LlmProviderForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        key = form.cleaned_data["api_key"]
        try:
            saved = llm_provider_save(
                tenant=tenant,
                data=_provider_data(form),
                api_key=key if key else None,
                config=config,
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Language model “%(name)s” saved.") % {"name": saved.name})
            return redirect("chat:llm-provider-list", tenant_slug=tenant.slug)
    context = {"form": form, "config": config}
    return render(request, "chat/llm_provider_form.html", context, status=400 if form.errors else 200)


@manage
@require_http_methods(["GET", "POST"])
def llm_provider_delete_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    config = _provider(pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Delete language model"),
            object_name=config.name,
            consequence=_(
                "Its settings and API key are removed; answers are composed offline from the knowledge base "
                "unless another language model applies. This cannot be undone."
            ),
            button=_("Delete language model"),
            cancel_url=reverse("chat:llm-provider-edit", args=[tenant_slug, config.pk]),
        ),
    )
    if page is not None:
        return page
    llm_provider_delete(tenant=request.tenant, config=config, actor=request.user, request=request)  # type: ignore[attr-defined]
    messages.success(
        request,
        _("Language model “%(name)s” deleted: answers are composed offline unless another one applies.")
        % {"name": config.name},
    )
    return redirect("chat:llm-provider-list", tenant_slug=tenant_slug)


def _setup_route(name: str) -> Any:
    view, methods = SETUP_ROUTES[name]

    @manage
    @methods
    def route(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
        return view(request, _channel(request, pk))

    route.__name__ = f"channel_{name.replace('-', '_')}_view"
    return route


channel_platform_view = _setup_route("platform")
channel_platform_test_view = _setup_route("platform-test")
channel_undelivered_retry_view = _setup_route("undelivered-retry")
channel_origins_view = _setup_route("origins")
channel_identity_view = _setup_route("identity")
channel_identity_secret_view = _setup_route("identity-secret")
channel_widget_rotate_view = _setup_route("widget-rotate")
channel_preview_view = _setup_route("preview")
