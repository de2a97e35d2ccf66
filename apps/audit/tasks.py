"""Periodic audit work: anchoring every chain head outside its region (beat: HUB_AUDIT_ANCHOR_SECONDS)."""

from __future__ import annotations

from celery import shared_task

from apps.audit.services import audit_anchor_all


@shared_task(acks_late=True, reject_on_worker_lost=True)
def audit_anchor_all_task() -> int:
    return audit_anchor_all()
