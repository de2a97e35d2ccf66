"""Each messaging platform account is paced by its platform's documented send rate, not the 10/s default."""

from __future__ import annotations

from apps.chat.selectors.channel_inbound import PLATFORM_KINDS
from apps.integrations.resilience import DEFAULT_RATE, VENDOR_RATES


def test_every_platform_kind_has_its_own_send_rate() -> None:
    for kind in PLATFORM_KINDS:
        assert kind in VENDOR_RATES, kind
        assert VENDOR_RATES[kind].rate > DEFAULT_RATE.rate, kind


def test_the_rates_stay_within_the_platforms_limits() -> None:
    # WhatsApp: 80 messages/s per number, inbound included; Teams: 50 requests/s per app and tenant.
    assert VENDOR_RATES["whatsapp"].capacity <= 80 and VENDOR_RATES["whatsapp"].rate <= 40
    assert VENDOR_RATES["teams"].capacity <= 50 and VENDOR_RATES["teams"].rate < 50
