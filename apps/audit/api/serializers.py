"""Audit API shapes. An event carries every hashed field under its chain name, so a client recomputes
`hash = SHA-256(prev_hash || canonical JSON)` from the JSON as served (apps/audit/chain.py)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from apps.audit.api.filters import MAX_BIGINT
from apps.audit.chain import HASHED_FIELDS
from apps.audit.models import AuditAnchor, AuditEvent
from apps.tenants.api_base import StrictSerializer

#: The canonical timestamp of the chain (UTC, microseconds, "Z"): what the hash covers, and valid ISO 8601.
CANONICAL_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class AuditEventSerializer(serializers.ModelSerializer):
    occurred_at = serializers.DateTimeField(format=CANONICAL_TIME, default_timezone=UTC, read_only=True)

    class Meta:
        model = AuditEvent
        fields = [*HASHED_FIELDS, "prev_hash", "hash"]
        read_only_fields = fields


class VerifyRequestSerializer(StrictSerializer):
    from_seq = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_BIGINT, help_text="First event to check."
    )
    to_seq = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_BIGINT, help_text="Last event to check."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        first, last = attrs.get("from_seq"), attrs.get("to_seq")
        if first is not None and last is not None and first > last:
            raise serializers.ValidationError({"to_seq": [_("Must not be smaller than from_seq.")]})
        return attrs


class ChainHeadSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    hash = serializers.CharField()


class AnchorSerializer(serializers.ModelSerializer):
    """A signed chain head; the Ed25519 signature covers apps/audit/chain.anchor_message of these fields."""

    anchored_at = serializers.DateTimeField(format=CANONICAL_TIME, default_timezone=UTC)

    class Meta:
        model = AuditAnchor
        fields = ["tenant_id", "seq", "hash", "anchored_at", "public_key", "signature"]


class VerifyResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="Events checked before the first break (all when ok).")
    broken_seq = serializers.IntegerField(allow_null=True, help_text="Where the chain breaks (null: intact).")
    reason = serializers.CharField(allow_blank=True)
    kind = serializers.CharField(
        allow_blank=True,
        help_text="missing, duplicated, unlinked, modified, truncated or forged; blank when ok.",
    )
    from_seq = serializers.IntegerField(allow_null=True)
    to_seq = serializers.IntegerField(allow_null=True)
    head = ChainHeadSerializer(allow_null=True, help_text="The chain's newest event when the check began.")
    anchor = AnchorSerializer(allow_null=True, help_text="The newest signed head (control database).")
