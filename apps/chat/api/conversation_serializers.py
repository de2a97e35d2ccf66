"""Serializers of the channel-facing chat API. Unknown fields are refused: a typo must not pass silently."""

from __future__ import annotations

import json
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

_MAX_METADATA_BYTES = 2048


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [_("Unknown field.")] for name in unknown})
        return super().to_internal_value(data)


class StrictSerializerSchema(OpenApiSerializerExtension):
    """Say in the schema what StrictSerializer enforces: no properties beyond the declared ones."""

    target_class = "apps.chat.api.conversation_serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        return schema


USER_HASH_HELP = (
    "Channels with identity mode `hmac`: hex HMAC-SHA256 of `user_ref` with the channel's identity secret, "
    "computed by the site's server. A valid hash marks the conversation verified; an invalid one is a 400."
)
JWT_PROOF_HELP = (
    "Channels with identity mode `jwt`: a compact HS256 JWT signed with the channel's identity secret: `sub` "
    "(the user id), optional `email` and `phone` (E.164), `iat`, `exp` (at most 1 hour after `iat`) and "
    "`aud` = the channel id. A valid token marks the conversation verified; an invalid one is a 400."
)


class ConversationCreateSerializer(StrictSerializer):
    user_ref = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        help_text="The channel's reference for the user (a phone number, a Slack user id); stored encrypted.",
    )
    locale = serializers.RegexField(
        r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$",
        max_length=16,
        required=False,
        help_text="BCP 47 locale of the user, e.g. fr-CA. Defaults to the channel's locale.",
    )
    metadata = serializers.DictField(
        required=False, default=dict, help_text="Small JSON object kept with the conversation."
    )
    user_hash = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text=USER_HASH_HELP,
    )
    identity_token = serializers.CharField(
        max_length=4096,
        required=False,
        allow_blank=True,
        default="",
        help_text=JWT_PROOF_HELP,
    )

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        encoded = json.dumps(value)
        if len(encoded) > _MAX_METADATA_BYTES:
            raise serializers.ValidationError(_("Metadata is too large: at most 2 KB of JSON."))
        if _has_nul(value):  # PostgreSQL's jsonb cannot store NUL characters: a 400, not a 500
            raise serializers.ValidationError(_("Metadata must not contain NUL characters."))
        return value


class IdentifySerializer(StrictSerializer):
    user_ref = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        help_text="The user id the `user_hash` is computed over (with a JWT: optional, must equal `sub`).",
    )
    user_hash = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default="", help_text=USER_HASH_HELP
    )
    identity_token = serializers.CharField(
        max_length=4096, required=False, allow_blank=True, default="", help_text=JWT_PROOF_HELP
    )


class ConversationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    identity_verified = serializers.BooleanField(
        help_text="The user's identity was proven (user hash, JWT or the messaging platform)."
    )
    locale = serializers.CharField()
    region = serializers.CharField()
    metadata = serializers.DictField()
    turns = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class MessageCreateSerializer(StrictSerializer):
    text = serializers.CharField(max_length=100_000, trim_whitespace=True, help_text="The user's message.")


class CitationSerializer(serializers.Serializer):
    article_key = serializers.CharField()
    title = serializers.CharField(help_text="The article's title as plain text (never HTML).")
    locale = serializers.CharField()
    url = serializers.CharField()


#: The contract of `reply.text`, shown in the OpenAPI schema.
REPLY_TEXT_HELP = (
    "The reply as plain UTF-8 text, never HTML: markup in knowledge articles or in a language model's "
    "answer is removed before the reply is stored (tags dropped, entities decoded, nothing left that a "
    "browser would parse as a tag). Lines are separated by `\\n`; `[n]` cites `citations[n-1]`. Articles "
    "are written in "
    "Markdown, so a reply may keep light Markdown punctuation (`**bold**`, `- ` list items). Messaging "
    "channels (WhatsApp, SMS, Slack, Teams) send it as text; a web widget shows it as text "
    "(`textContent`) or renders it as Markdown with raw HTML disabled."
)


class ReplySerializer(serializers.Serializer):
    text = serializers.CharField(
        allow_null=True,
        help_text=REPLY_TEXT_HELP
        + " Null while the conversation is handed off to people (`handoff` true): the message went to the "
        "agents' ticket, the bot stays quiet, and the agents' answers arrive later as messages of role "
        "`agent`.",
    )
    citations = CitationSerializer(many=True)
    intent = serializers.CharField()
    actions = serializers.ListField(child=serializers.DictField())
    handoff = serializers.BooleanField()


class TurnSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    message_id = serializers.IntegerField()
    reply = ReplySerializer()


def turn_data(turn: Any) -> dict[str, Any]:
    """What TurnSerializer renders, built directly: the serializer documents the shape in the schema, but
    instantiating it deep-copies its nested fields on every turn (a tenth of a cached turn's CPU)."""
    reply = turn.reply
    return {
        "conversation_id": str(turn.conversation_id),
        "message_id": int(turn.message_id),
        "reply": {
            "text": None if reply["text"] is None else str(reply["text"]),
            "citations": [
                {name: str(c[name]) for name in ("article_key", "title", "locale", "url")}
                for c in reply["citations"]
            ],
            "intent": str(reply["intent"]),
            "actions": [dict(action) for action in reply["actions"]],
            "handoff": bool(reply["handoff"]),
        },
    }


class TranscriptMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.CharField()
    text = serializers.CharField()
    intent = serializers.CharField()
    citations = CitationSerializer(many=True)
    actions = serializers.ListField(child=serializers.DictField())
    handoff = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class TranscriptSerializer(ConversationSerializer):
    messages = TranscriptMessageSerializer(many=True)


class FeedbackCreateSerializer(StrictSerializer):
    rating = serializers.IntegerField(min_value=1, max_value=5, help_text="1 (bad) to 5 (good).")
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    message_id = serializers.IntegerField(required=False, allow_null=True, default=None)


class FeedbackSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rating = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class CsatCreateSerializer(StrictSerializer):
    rating = serializers.IntegerField(
        min_value=1, max_value=5, help_text="1 (not at all satisfied) to 5 (very satisfied)."
    )
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class CsatSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rating = serializers.IntegerField()
    kind = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class HandoffCreateSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class LaterMessageSerializer(serializers.Serializer):
    """A message of the conversation as a polling or streaming client sees it (issue 18)."""

    id = serializers.IntegerField(help_text="Increasing within the conversation: the `after` cursor.")
    role = serializers.CharField(
        help_text="`user`, `assistant` or `agent` (a person answering from the ticketing system during a "
        "handoff)."
    )
    text = serializers.CharField(help_text=REPLY_TEXT_HELP)
    author = serializers.CharField(
        help_text="An agent's display name as the ticketing system gives it, or empty."
    )
    citations = CitationSerializer(many=True)
    created_at = serializers.DateTimeField()


class MessagePageSerializer(serializers.Serializer):
    messages = LaterMessageSerializer(many=True)
    next_after = serializers.IntegerField(
        help_text="The id to pass as `after` for the next page (the last message's id; `after` when empty)."
    )
    has_more = serializers.BooleanField(
        help_text="More messages follow: ask again with `next_after` at once."
    )
