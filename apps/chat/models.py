"""Chat: channels and their API keys (control plane), conversations, messages, feedback, usage (region).

The API-key index sits in the control database so a request can be authenticated, and its tenant found,
before anything is known about the tenant's region. Everything a conversation says lives in the region.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from apps.core.models import RegionModel, RegionObjectModel, TimeStampedModel
from apps.security.fields import EncryptedTextField


class ChannelKind(models.TextChoices):
    WEB = "web", _("Web widget")
    WHATSAPP = "whatsapp", _("WhatsApp")
    SLACK = "slack", _("Slack")
    TEAMS = "teams", _("Microsoft Teams")
    SMS = "sms", _("SMS gateway")
    CUSTOM = "custom", _("Custom bot")


class Action(models.TextChoices):
    """Business actions a channel may allow; knowledge answers and small talk are always allowed."""

    ORDER_STATUS = "order_status", _("Order status")
    CREATE_TICKET = "create_ticket", _("Create ticket")
    CAPTURE_LEAD = "capture_lead", _("Capture lead")
    HANDOFF = "handoff", _("Human handoff")


class IdentityMode(models.TextChoices):
    """How a channel's users prove who they are (WhatsApp/SMS numbers are verified by the platform itself)."""

    NONE = "none", _("Not verified")
    HMAC = "hmac", _("HMAC of the user id (user hash)")
    JWT = "jwt", _("Signed JWT")


class Channel(TimeStampedModel):
    """One chatbot channel of a tenant (a web widget, a WhatsApp number, a Slack app)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="channels")
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=16, choices=ChannelKind.choices, default=ChannelKind.WEB)
    default_locale = models.CharField(_("default locale"), max_length=16, default="en")
    allowed_actions = models.JSONField(
        _("allowed actions"),
        default=list,
        blank=True,
        help_text=_("Business actions this channel may perform."),
    )
    knowledge_base_id = models.UUIDField(
        _("knowledge base"),
        null=True,
        blank=True,
        help_text=_("Answer only from this knowledge base (empty: all)."),
    )
    content_region = models.CharField(
        _("content region"),
        max_length=16,
        blank=True,
        default="",
        help_text=_("Regional variants to prefer (empty: the tenant's home region)."),
    )
    ticket_connection_id = models.UUIDField(_("ticket connection"), null=True, blank=True)
    lead_connection_id = models.UUIDField(_("lead connection"), null=True, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    # --- Messaging platforms (issue 17) ---
    # The platform account (an integrations Connection of this channel's kind) that verifies inbound webhooks
    # and sends replies: its credentials are encrypted and bound to their origin, its breaker and outbox
    # deliver the replies. Empty for the web widget and custom bots.
    platform_connection_id = models.UUIDField(
        _("platform account"),
        null=True,
        blank=True,
        help_text=_("The connection that receives and sends this channel's messages on the platform."),
    )
    identity_mode = models.CharField(
        _("user identity"),
        max_length=8,
        choices=IdentityMode.choices,
        default=IdentityMode.NONE,
        help_text=_("How the site or bot vouches for its users; unverified users cannot see customer data."),
    )
    # The shared secret of `identity_mode` (HMAC key of the user hash, or HS256 key of the JWT). Write-only.
    identity_secret = EncryptedTextField(_("identity secret"), blank=True, null=True)
    # Web widget: the public key a site embeds (never the secret API key) and the origins allowed to use it.
    widget_key = models.CharField(_("widget key"), max_length=40, unique=True, null=True, blank=True)
    allowed_origins = models.JSONField(
        _("allowed origins"),
        default=list,
        blank=True,
        help_text=_("Web widget: the sites (scheme://host[:port]) that may embed it."),
    )

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="channel_unique_name")]

    def __str__(self) -> str:
        return self.name


class ApiKeyScope(models.TextChoices):
    CHAT = "chat", _("Chat (create conversations, send messages)")
    TRANSCRIPTS = "transcripts", _("Read transcripts")


class ApiKey(TimeStampedModel):
    """A channel's key for the chat API. Only a SHA-256 hash is stored; the prefix tells keys apart."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="api_keys")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(_("scopes"), default=list)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ConversationStatus(models.TextChoices):
    OPEN = "open", pgettext_lazy("status", "Open")
    HANDOFF = "handoff", _("Handed off")
    CLOSED = "closed", _("Closed")


class Conversation(RegionObjectModel):
    """A channel user's conversation. The channel's user reference is kept encrypted, with a keyed hash to
    find a person's conversations for erasure."""

    hub_silo: ClassVar[str] = "region"

    channel_id = models.UUIDField(db_index=True)
    channel_kind = models.CharField(max_length=16)
    user_ref = EncryptedTextField(blank=True, null=True)
    user_ref_hash = models.CharField(max_length=64, db_index=True, blank=True, default="")
    locale = models.CharField(max_length=16)
    region = models.CharField(max_length=16)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=ConversationStatus.choices, default=ConversationStatus.OPEN
    )
    last_intent = models.CharField(max_length=32, blank=True, default="")
    turns = models.PositiveIntegerField(default=0)
    # --- Messaging platforms and identity (issue 17) ---
    # A keyed hash (HUB_USER_REF_KEYS) of the platform's conversation key (a phone number, a Slack thread, a
    # Teams conversation id): finds the open conversation an inbound message belongs to.
    platform_key_hash = models.CharField(max_length=64, blank=True, default="")
    # Where replies and later (agent) messages go on the platform: the adapter's reply_ref as JSON. Encrypted:
    # it holds phone numbers.
    reply_ref = EncryptedTextField(blank=True, null=True)
    # The user's identity was vouched for (platform-verified number, valid user hash or JWT) ...
    identity_verified = models.BooleanField(default=False)
    # ... and is this (JSON: "user_id", "email", "phone"), compared with the CRM record before an action
    # reveals or changes customer data.
    verified_identity = EncryptedTextField(blank=True, null=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant_id", "created_at"], name="conversation_tenant_created"),
            models.Index(
                fields=["tenant_id", "channel_id", "platform_key_hash"],
                condition=~models.Q(platform_key_hash=""),
                name="conversation_platform_key",
            ),
        ]


class Role(models.TextChoices):
    USER = "user", _("User")
    ASSISTANT = "assistant", _("Assistant")
    AGENT = "agent", _("Agent")  # a person answering from the ticketing system during a handoff


class Outcome(models.TextChoices):
    ANSWERED = "answered", _("Answered")
    FALLBACK = "fallback", _("Fallback")
    HANDOFF = "handoff", _("Handoff")
    ACTION = "action", _("Action")
    ERROR = "error", _("Error")


class Message(RegionModel):
    """One turn's text. A user message carries the channel's Idempotency-Key; its reply points back at it."""

    hub_silo: ClassVar[str] = "region"

    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField()
    reply_to = models.OneToOneField(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="reply"
    )
    idempotency_key = models.CharField(max_length=128, blank=True, default="")
    intent = models.CharField(max_length=32, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, default="")
    citations = models.JSONField(default=list, blank=True)
    actions = models.JSONField(default=list, blank=True)
    handoff = models.BooleanField(default=False)
    latency_ms = models.FloatField(null=True, blank=True)
    model = models.CharField(max_length=100, blank=True, default="")
    # An agent message's author as the ticketing system names them (display name, "" when unknown). Agent
    # messages carry idempotency_key "agent:<vendor comment id>", so a comment read twice is stored once.
    # db_default: the turn's own INSERT (services/conversations.py, raw SQL) does not name the column.
    author = models.CharField(max_length=200, blank=True, default="", db_default="")
    # A later message the channel could not deliver (issue 18, apps/chat/services/delivery.py): why, as a
    # short word ("window_closed", "no_account", "no_address", "bad_account"), and when; the console lists
    # them per channel.
    undelivered_reason = models.CharField(max_length=32, blank=True, default="", db_default="")
    undelivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="message_idempotency",
            )
        ]
        indexes = [
            models.Index(fields=["tenant_id", "created_at"], name="message_tenant_created"),
            models.Index(
                fields=["tenant_id", "undelivered_at"],
                condition=models.Q(undelivered_at__isnull=False),
                name="message_undelivered",
            ),
        ]


#: An answer's rating is 1 (bad) to 5 (good) (the chat API's feedback); these count as rated down / up
#: wherever answers are judged (learning loop, article quality, the console's languages table). Rows of
#: the earlier thumbs scale (-1/1) fall on the same sides.
ANSWER_RATING_DOWN_MAX = 2
ANSWER_RATING_UP_MIN = 4


class FeedbackKind(models.TextChoices):
    ANSWER = "answer", _("Answer rating")
    CSAT = "csat", _("Satisfaction after a handoff")


class Feedback(RegionModel):
    hub_silo: ClassVar[str] = "region"

    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="feedback")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    rating = models.SmallIntegerField()
    comment = models.TextField(blank=True, default="")
    # An answer's rating (1-5; ANSWER_RATING_DOWN_MAX / _UP_MIN), or the CSAT score (1-5) asked for when a
    # handoff ends.
    kind = models.CharField(max_length=8, choices=FeedbackKind.choices, default=FeedbackKind.ANSWER)
    handoff = models.ForeignKey("Handoff", on_delete=models.CASCADE, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at"]


class LlmUsage(RegionModel):
    """Tokens and cost of one provider call, for cost reports per tenant, region, channel and model."""

    hub_silo: ClassVar[str] = "region"

    id = models.BigAutoField(primary_key=True)
    conversation_id = models.UUIDField(null=True, blank=True)
    channel_kind = models.CharField(max_length=16)
    region = models.CharField(max_length=16)
    model = models.CharField(max_length=100)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant_id", "created_at"], name="llmusage_tenant_created")]


class LlmProviderConfig(RegionObjectModel):
    """An OpenAI-compatible provider for one tenant, used for conversations served from `region` (empty: any
    region the residency policy allows the endpoint's region to receive data from)."""

    hub_silo: ClassVar[str] = "region"

    name = models.CharField(_("name"), max_length=100)
    region = models.CharField(_("conversation region"), max_length=16, blank=True, default="")
    endpoint_region = models.CharField(
        _("endpoint region"), max_length=16, help_text=_("Region the provider's endpoint is in.")
    )
    base_url = models.URLField(_("base URL"), max_length=300)
    model = models.CharField(_("model"), max_length=100)
    api_key = EncryptedTextField(_("API key"), blank=True, null=True)
    # The base URL origin the API key was entered for: the key is never sent anywhere else.
    api_key_origin = models.CharField(_("API key entered for"), max_length=300, blank=True, default="")
    prompt_price_per_1k = models.DecimalField(
        _("prompt price per 1k tokens (USD)"), max_digits=10, decimal_places=6, default=0
    )
    completion_price_per_1k = models.DecimalField(
        _("completion price per 1k tokens (USD)"), max_digits=10, decimal_places=6, default=0
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    classify_intents = models.BooleanField(
        _("classify intents"),
        default=False,
        help_text=_("Ask this provider to classify messages the fast classifier is unsure about."),
    )

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant_id", "name"], name="llmprovider_unique_name")]

    def __str__(self) -> str:
        return self.name


class InboundStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    DONE = "done", _("Answered")
    IGNORED = "ignored", _("Ignored")
    FAILED = "failed", _("Failed")


class InboundEvent(RegionObjectModel):
    """A platform message accepted by a channel webhook: stored before the platform gets its 200, then run
    as a turn by a worker. The durable record of the message (a sweep re-queues one whose task was lost) and
    its de-duplication key: platforms retry deliveries, each platform message id is taken once per channel.
    `payload` (sender, text, reply_ref) is personal data: encrypted, erased with the conversation."""

    hub_silo: ClassVar[str] = "region"

    channel_id = models.UUIDField()
    channel_kind = models.CharField(max_length=16)
    platform_message_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=InboundStatus.choices, default=InboundStatus.QUEUED)
    payload = EncryptedTextField(blank=True, null=True)
    conversation_id = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "channel_id", "platform_message_id"], name="inbound_event_once"
            )
        ]
        indexes = [
            # The sweep's scan: queued events whose task may have been lost.
            models.Index(
                fields=["created_at"], condition=models.Q(status="queued"), name="inbound_event_queued"
            )
        ]


# --- Human handoff (issue 18) ---------------------------------------------------------------------------
class BusinessHours(TimeStampedModel):
    """When people answer, in one time zone: weekly opening intervals and holidays (local dates)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="business_hours")
    name = models.CharField(_("name"), max_length=100)
    timezone = models.CharField(
        _("time zone"), max_length=64, default="UTC", help_text=_("IANA name, e.g. Europe/Berlin.")
    )
    # {"mon": [["09:00", "17:30"]], "tue": [...], ...}: local wall-clock intervals; a missing day is closed.
    weekly = models.JSONField(_("opening hours"), default=dict, blank=True)
    # ["2026-12-25", ...]: local dates with no opening at all.
    holidays = models.JSONField(_("holidays"), default=list, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="business_hours_unique_name")]

    def __str__(self) -> str:
        return self.name


class HandoffRoute(TimeStampedModel):
    """Where a handoff's ticket goes. Routes are tried by `position`; the first whose conditions all match
    (empty list = any) wins; no match falls back to the channel's ticket connection."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="handoff_routes")
    name = models.CharField(_("name"), max_length=100)
    position = models.PositiveIntegerField(_("position"), default=0)
    enabled = models.BooleanField(_("enabled"), default=True)
    regions = models.JSONField(_("regions"), default=list, blank=True)
    locales = models.JSONField(_("locales"), default=list, blank=True)
    intents = models.JSONField(_("intents"), default=list, blank=True)
    channel_kinds = models.JSONField(_("channel kinds"), default=list, blank=True)
    connection_id = models.UUIDField(_("ticket connection"))
    queue = models.CharField(
        _("queue"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("Assignment group (ServiceNow), queue id (Salesforce) or pipeline (HubSpot)."),
    )
    business_hours = models.ForeignKey(
        BusinessHours, on_delete=models.SET_NULL, null=True, blank=True, related_name="routes"
    )
    # Used while the primary connection's circuit breaker is open (or it is disabled).
    fallback_connection_id = models.UUIDField(_("fallback connection"), null=True, blank=True)
    fallback_queue = models.CharField(_("fallback queue"), max_length=255, blank=True, default="")

    class Meta:
        ordering = ["position", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="handoff_route_unique_name")]

    def __str__(self) -> str:
        return self.name


class HandoffState(models.TextChoices):
    REQUESTED = "requested", _("Ticket requested")  # the ticket's outbox message is not delivered yet
    OPEN = "open", pgettext_lazy("handoff", "Open")  # the ticket exists; agents and customer talk
    RESOLVED = "resolved", _("Back with the bot")  # ticket resolved/closed (or the agent's phrase)
    FAILED = "failed", _("Ticket failed")  # the ticket could not be created (dead letter); bot is back


class Handoff(RegionModel):
    """One hand-over of a conversation to people, on one vendor ticket. A conversation has at most one
    active (requested/open) handoff; the ticket is the outbox message `ticket_outbox_id`, whose vendor id
    the handoff learns once it is delivered."""

    hub_silo: ClassVar[str] = "region"

    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="handoffs")
    state = models.CharField(max_length=16, choices=HandoffState.choices, default=HandoffState.REQUESTED)
    connection_id = models.UUIDField()
    route_id = models.UUIDField(null=True, blank=True)
    queue = models.CharField(max_length=255, blank=True, default="")
    ticket_outbox_id = models.BigIntegerField(null=True, blank=True)
    ticket_external_id = models.CharField(max_length=255, blank=True, default="")  # the hub's
    ticket_vendor_id = models.CharField(max_length=255, blank=True, default="")
    ticket_number = models.CharField(max_length=64, blank=True, default="")  # what agents call it
    # Where the next thread read starts (connectors.base.Cursor.to_json) and when it is due.
    thread_cursor = models.JSONField(default=dict, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True)
    outside_hours = models.BooleanField(default=False)
    first_agent_reply_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=16, blank=True, default="")  # resolved, closed, phrase, failed
    csat_requested = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=models.Q(state__in=["requested", "open"]),
                name="handoff_one_active",
            )
        ]
        indexes = [
            models.Index(
                fields=["next_poll_at"],
                condition=models.Q(state__in=["requested", "open"]),
                name="handoff_poll_due",
            ),
            models.Index(fields=["tenant_id", "connection_id", "ticket_vendor_id"], name="handoff_ticket"),
            models.Index(fields=["tenant_id", "state", "-created_at"], name="handoff_list"),
        ]

    def __str__(self) -> str:
        return f"handoff {self.pk} ({self.state})"
