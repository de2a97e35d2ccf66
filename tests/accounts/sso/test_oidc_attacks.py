"""OpenID Connect answers that must not sign anyone in: forged, mis-addressed, expired, replayed or unsigned
tokens, replayed or unknown state, errors from the IdP, a provider whose discovery names another issuer.
Each ends on the clear failure page (never a 500), audited as a denied sign-in, with nobody signed in."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent, PlatformAuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from connectors.oidc.simulator import OidcSimulator
from tests.fixtures.oidc import MakeProvider, idp_user, oidc_authorize, oidc_sign_in

pytestmark = pytest.mark.django_db

CALLBACK = reverse("accounts:oidc-callback")


def denied_reasons(tenant: Tenant) -> list[str]:
    with tenant_context(tenant):
        events = AuditEvent.objects.filter(action="security.sso_login", outcome="denied").order_by("pk")
        return [e.changes.get("reason") for e in events]


def assert_refused(response: object, client: Client, *, status: int, reference: str) -> None:
    body = response.content.decode()  # type: ignore[attr-defined]
    assert response.status_code == status  # type: ignore[attr-defined]
    assert 'data-testid="sso-error"' in body and reference in body
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("forged", "bad_signature"),
        ("unknown_key", "unknown_key"),
        ("aud", "wrong_audience"),
        ("issuer", "wrong_issuer"),
        ("expired", "expired"),
        ("nonce", "nonce_mismatch"),
        ("alg_none", "bad_algorithm"),
    ],
)
def test_a_bad_id_token_is_refused_with_a_clear_page_and_audited(
    client: Client,
    tenant_a: Tenant,
    oidc_idp: OidcSimulator,
    oidc_provider: MakeProvider,
    fault: str,
    reason: str,
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    email = idp_user(oidc_idp, "gwen", domain="a.example", groups=["hub-admins"])
    oidc_idp.spoil_tokens(fault)

    response = oidc_sign_in(client, provider, username="gwen")

    assert_refused(response, client, status=400, reference=reason)
    assert "could not be verified" in response.content.decode()
    assert not get_user_model().objects.filter(email=email).exists()
    assert denied_reasons(tenant_a) == [reason]


def test_a_replayed_callback_is_refused(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])
    callback = oidc_authorize(client, provider, username="vic")
    assert client.get(callback).status_code == 302

    other = Client()  # the same URL in another browser (stolen from a log or the history)
    assert_refused(other.get(callback), other, status=400, reference="state_mismatch")
    client.logout()
    assert_refused(client.get(callback), client, status=400, reference="state_mismatch")
    assert PlatformAuditEvent.objects.filter(action="security.sso_login", outcome="denied").count() == 2


def test_a_replayed_code_is_refused_by_the_provider(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    """A used code comes back with a fresh state of the victim's session: the provider refuses it."""
    provider = oidc_provider(tenant_a, domain="a.example")
    idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])
    used = parse_qs(urlsplit(oidc_authorize(client, provider, username="vic")).query)
    assert client.get(CALLBACK, {"code": used["code"][0], "state": used["state"][0]}).status_code == 302
    client.logout()

    fresh = parse_qs(
        urlsplit(client.get(reverse("accounts:sso-start", args=[provider.pk]))["Location"]).query
    )
    response = client.get(CALLBACK, {"code": used["code"][0], "state": fresh["state"][0]})

    assert_refused(response, client, status=400, reference="token_exchange_failed")
    assert denied_reasons(tenant_a) == ["token_exchange_failed"]


@pytest.mark.parametrize("query", [{}, {"state": "made-up"}, {"code": "abc", "state": ""}])
def test_an_unknown_state_is_refused(client: Client, query: dict[str, str]) -> None:
    assert_refused(client.get(CALLBACK, query), client, status=400, reference="state_mismatch")


def test_an_expired_pending_sign_in_is_refused(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    from apps.accounts.services.oidc import PENDING_KEY

    provider = oidc_provider(tenant_a, domain="a.example")
    idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])
    callback = oidc_authorize(client, provider, username="vic")
    session = client.session
    for pending in session[PENDING_KEY].values():
        pending["expires"] -= 601
    session.save()

    assert_refused(client.get(callback), client, status=400, reference="state_mismatch")


@pytest.mark.parametrize(
    ("error", "shown", "message"),
    [
        ("access_denied", "access_denied", "You cancelled the sign-in"),
        ("<script>alert(1)</script>", "invalid_response", "did not sign you in"),
    ],
)
def test_an_error_from_the_idp_is_shown_clearly(
    client: Client,
    tenant_a: Tenant,
    oidc_idp: OidcSimulator,
    oidc_provider: MakeProvider,
    error: str,
    shown: str,
    message: str,
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    start = client.get(reverse("accounts:sso-start", args=[provider.pk]))
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]

    response = client.get(f"{CALLBACK}?{urlencode({'error': error, 'state': state})}")

    assert_refused(response, client, status=400, reference=shown)
    body = response.content.decode()
    assert message in body and "<script>alert" not in body
    assert denied_reasons(tenant_a) == ["idp_error"]


def test_key_rotation_is_followed_and_an_unknown_key_refetches_once(
    tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])
    assert oidc_sign_in(Client(), provider, username="vic").status_code == 302
    assert oidc_idp.jwks_fetches == 1
    assert oidc_sign_in(Client(), provider, username="vic").status_code == 302
    assert oidc_idp.jwks_fetches == 1  # cached

    oidc_idp.rotate_keys()
    oidc_idp.retire_keys()
    assert oidc_sign_in(Client(), provider, username="vic").status_code == 302  # new kid: refetched
    assert oidc_idp.jwks_fetches == 2

    oidc_idp.spoil_tokens("unknown_key")
    for _ in range(2):
        client = Client()
        assert_refused(
            oidc_sign_in(client, provider, username="vic"), client, status=400, reference="unknown_key"
        )
    assert (
        oidc_idp.jwks_fetches == 2
    )  # the refetch is rate-limited: an attacker cannot make us hammer the IdP


def test_a_discovery_document_naming_another_issuer_is_refused(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    provider.oidc_discovery_url = provider.oidc_discovery_url.replace("127.0.0.1", "localhost")
    provider.save()

    response = client.get(reverse("accounts:sso-start", args=[provider.pk]))

    assert_refused(response, client, status=502, reference="wrong_issuer")
    assert denied_reasons(tenant_a) == ["wrong_issuer"]


def test_an_unreachable_provider_shows_a_clear_page(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    oidc_idp.stop()

    response = client.get(reverse("accounts:sso-start", args=[provider.pk]))

    assert_refused(response, client, status=502, reference="discovery_failed")
    assert "cannot be reached" in response.content.decode()


def test_a_private_address_is_refused_unless_allow_listed(
    client: Client, settings: object, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    settings.HUB_CONNECTOR_ALLOW_HOSTS = []  # type: ignore[attr-defined]  # as in production

    response = client.get(reverse("accounts:sso-start", args=[provider.pk]))

    assert_refused(response, client, status=502, reference="discovery_failed")
    assert oidc_idp.jwks_fetches == 0


@pytest.mark.parametrize(
    "line",
    [
        "<WSGIRequest: GET '/accounts/sso/oidc/callback/?code=SECRETCODE&state=SECRETSTATE'>",
        "GET /accounts/sso/oidc/callback/?state=SECRETSTATE&code=SECRETCODE HTTP/1.1",
        "/accounts/login/?next=%2Faccounts%2Fsso%2Foidc%2Fcallback%2F%3Fcode%3DSECRETCODE",
    ],
)
def test_the_callbacks_code_and_state_never_reach_a_log_line(line: str) -> None:
    from apps.observability.redact import redact_secrets

    shown = redact_secrets(line)
    assert "SECRETCODE" not in shown and "SECRETSTATE" not in shown and "callback" in shown


def test_pending_sign_ins_per_session_are_capped(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    from apps.accounts.services.oidc import MAX_PENDING, PENDING_KEY

    provider = oidc_provider(tenant_a, domain="a.example")
    states = []
    for _ in range(MAX_PENDING + 2):
        start = client.get(reverse("accounts:sso-start", args=[provider.pk]))
        states.append(parse_qs(urlsplit(start["Location"]).query)["state"][0])

    assert sorted(client.session[PENDING_KEY]) == sorted(states[-MAX_PENDING:])
    response = client.get(CALLBACK, {"state": states[0], "code": "whatever"})
    assert_refused(response, client, status=400, reference="state_mismatch")
