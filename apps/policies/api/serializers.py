"""Serializers of the data-subject request API. Requests name the subject by pseudonym (and, to those who act
on them, by masked identifiers); the identifiers given at registration are never returned."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.policies.models import MAX_EXTENSION_DAYS, DataSubjectRequest, RequestKind, RequestStatus
from apps.tenants.api_base import StrictSerializer


class DsrFilterSerializer(serializers.Serializer):
    """Query parameters of the list (unknown ones, e.g. limit/offset, are the paginator's)."""

    status = serializers.ChoiceField(choices=RequestStatus.choices, required=False)
    kind = serializers.ChoiceField(choices=RequestKind.choices, required=False)
    overdue = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: open requests past their deadline; false: all others.",
    )


class DsrSerializer(serializers.ModelSerializer):
    """A request in the list: status and deadlines, the subject by pseudonym."""

    deadline = serializers.SerializerMethodField(help_text="overdue, due_soon, or empty.")
    pseudonyms = serializers.DictField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Keyed hash of each identifier given (email, phone, external_id, user_ref): "
        "what the audit log names the subject by.",
    )

    class Meta:
        model = DataSubjectRequest
        fields = [
            "id",
            "kind",
            "status",
            "deadline",
            "received_at",
            "due_at",
            "extension_days",
            "extension_reason",
            "reason",
            "completed_at",
            "subject_key",
            "pseudonyms",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_deadline(self, dsr: DataSubjectRequest) -> str:
        return str(self.context["deadlines"].get(dsr.pk, ""))


class DsrArchiveEvidenceSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    truncated = serializers.ListField(child=serializers.CharField())
    built_at = serializers.CharField()


class DsrErasureEvidenceSerializer(serializers.Serializer):
    counts = serializers.DictField(child=serializers.IntegerField())
    total = serializers.IntegerField()
    erased_at = serializers.CharField()


class DsrNotificationSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The notification's id (outbox message or `manual:<connection>`).")
    connection = serializers.CharField()
    kind = serializers.CharField(help_text="The vendor, e.g. salesforce.")
    state = serializers.CharField(
        help_text="pending, delivering, delivered, dead, discarded, manual or handled."
    )
    handled_reason = serializers.CharField(allow_blank=True)


class DsrDetailSerializer(DsrSerializer):
    """One request with its evidence: the archive's digest and counts, the erasure's counts, each vendor
    notification's state."""

    notes = serializers.CharField(read_only=True)
    identifiers = serializers.SerializerMethodField(
        help_text="Masked identifiers (j***@example.com), for those who may act on the request; else null."
    )
    archive = serializers.SerializerMethodField()
    archive_available = serializers.SerializerMethodField(
        help_text="Whether the archive can be downloaded (until `archive_expires_at`)."
    )
    erasure = serializers.SerializerMethodField()
    notifications = serializers.SerializerMethodField()

    class Meta(DsrSerializer.Meta):
        fields = [
            *DsrSerializer.Meta.fields,
            "notes",
            "identifiers",
            "archive",
            "archive_available",
            "archive_expires_at",
            "erasure",
            "notifications",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField(child=serializers.CharField(), allow_null=True))
    def get_identifiers(self, dsr: DataSubjectRequest) -> dict[str, str] | None:
        masked: dict[str, str] | None = self.context.get("identifiers")
        return masked

    @extend_schema_field(DsrArchiveEvidenceSerializer(allow_null=True))
    def get_archive(self, dsr: DataSubjectRequest) -> dict[str, Any] | None:
        archive = dsr.evidence.get("archive")
        return DsrArchiveEvidenceSerializer(archive).data if archive else None

    @extend_schema_field(serializers.BooleanField())
    def get_archive_available(self, dsr: DataSubjectRequest) -> bool:
        return bool(self.context.get("has_archive"))

    @extend_schema_field(DsrErasureEvidenceSerializer(allow_null=True))
    def get_erasure(self, dsr: DataSubjectRequest) -> dict[str, Any] | None:
        erasure = dsr.evidence.get("erasure")
        return DsrErasureEvidenceSerializer(erasure).data if erasure else None

    @extend_schema_field(DsrNotificationSerializer(many=True))
    def get_notifications(self, dsr: DataSubjectRequest) -> list[dict[str, Any]]:
        return list(DsrNotificationSerializer(dsr.evidence.get("notifications") or [], many=True).data)


class DsrCreateSerializer(StrictSerializer):
    """Register a request, as the console form does: at least one identifier."""

    kind = serializers.ChoiceField(choices=RequestKind.choices)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    phone = serializers.CharField(required=False, allow_blank=True, default="", max_length=40)
    external_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    user_ref = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    received_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="When the request reached you; default now."
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(attrs.get(name) for name in ("email", "phone", "external_id", "user_ref")):
            raise serializers.ValidationError(
                _("Give an e-mail address, a phone number, an external id or a chat user reference.")
            )
        return attrs


class DsrExtendSerializer(StrictSerializer):
    days = serializers.IntegerField(min_value=1, max_value=MAX_EXTENSION_DAYS)
    reason = serializers.CharField(max_length=1000)


class DsrRejectSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=1000)


class DsrHandleSerializer(StrictSerializer):
    notice = serializers.CharField(max_length=80, help_text="The vendor notification's `id`.")
    reason = serializers.CharField(max_length=1000, help_text="How the vendor's copy was handled.")
