"""The access review page, its signed exports, the sign-off and the API; who may see them (issue 22)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import zipfile
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext

from apps.accounts import access_review_views
from apps.accounts.models import AccessReview
from apps.accounts.selectors import access_review_digest, access_review_report
from apps.accounts.services.access_review import access_review_complete
from apps.audit import signing
from apps.audit.chain import manifest_bytes
from apps.audit.models import AuditEvent
from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.core.spreadsheet import csv_cell_value
from apps.tenants.models import Tenant
from apps.tenants.services import management_token_create
from tests.fixtures.auth import issue_token, login_verified, session_client, token_client

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant) -> str:
    return reverse(name, kwargs={"tenant_slug": tenant.slug})


def api_url(name: str, tenant: Tenant) -> str:
    return reverse(f"accounts-api:{name}", kwargs={"slug": tenant.slug})


def _events(tenant: Tenant, action: str) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def _unzip(data: bytes) -> tuple[dict[str, Any], bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        return manifest, zf.read(manifest["file"])


# --- page ---------------------------------------------------------------------------------------------------
def test_page_lists_members_flags_and_help(officer_client: Client, tenant_a: Tenant, alice: Any) -> None:
    response = officer_client.get(url("accounts:access-review", tenant_a))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-username="alice"' in body and 'data-username="olivia"' in body
    assert "No 2FA" in body  # alice is an admin without a second factor
    assert "What the columns mean" in body
    assert "has not been reviewed yet" in body
    assert access_review_digest(access_review_report(tenant=tenant_a)) in body


def test_page_filters_and_sorts(officer_client: Client, tenant_a: Tenant, alice: Any, bob: Any) -> None:
    page = url("accounts:access-review", tenant_a)
    flagged = officer_client.get(page, {"flag": "missing_2fa"}).content.decode()
    assert 'data-username="alice"' in flagged and 'data-username="bob"' not in flagged
    viewers = officer_client.get(page, {"role": "viewer"}).content.decode()
    assert 'data-username="bob"' in viewers and 'data-username="alice"' not in viewers
    by_role = officer_client.get(page, {"sort": "role"}).content.decode()
    order = [by_role.index(f'data-username="{name}"') for name in ("alice", "olivia", "bob")]
    assert order == sorted(order)  # admin, compliance_officer, viewer
    empty = officer_client.get(page, {"role": "localization_editor"})
    assert empty.status_code == 200 and "No members match." in empty.content.decode()
    assert officer_client.get(page, {"flag": "bogus"}).status_code == 400


def test_audit_page_links_to_the_review(officer_client: Client, tenant_a: Tenant) -> None:
    body = officer_client.get(url("audit:event-list", tenant_a)).content.decode()
    assert url("accounts:access-review", tenant_a) in body


def test_viewer_is_refused_and_other_tenant_gets_404(
    client: Client, tenant_a: Tenant, bob: Any, charlie: Any
) -> None:
    client.force_login(bob)
    for name in (
        "accounts:access-review",
        "accounts:access-review-export",
        "accounts:access-review-complete",
    ):
        method = client.get if name == "accounts:access-review" else client.post
        assert method(url(name, tenant_a), {"format": "csv", **CONFIRMED}).status_code == 403
    login_verified(client, charlie)
    for name in (
        "accounts:access-review",
        "accounts:access-review-export",
        "accounts:access-review-complete",
    ):
        assert client.get(url(name, tenant_a)).status_code in (404, 405)
        assert client.post(url(name, tenant_a), {"format": "csv", **CONFIRMED}).status_code == 404
    assert _events(tenant_a, "access_review.completed") == []
    assert _events(tenant_a, "access_review.exported") == []


# --- exports ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_is_signed_and_audited(officer_client: Client, tenant_a: Tenant, alice: Any, fmt: str) -> None:
    response = officer_client.post(url("accounts:access-review-export", tenant_a), {"format": fmt})
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Cache-Control"] == "no-store"
    manifest, content = _unzip(response.content)
    public_key = signing.public_key_b64()
    assert manifest["public_key"] == public_key and manifest["algorithm"] == "Ed25519"
    assert signing.verify(manifest_bytes(manifest), manifest["signature"], public_key)
    assert hashlib.sha256(content).hexdigest() == manifest["sha256"]
    digest = access_review_digest(access_review_report(tenant=tenant_a))
    assert manifest["report_digest"] == digest and manifest["kind"] == "access_review"
    # A tampered manifest no longer verifies.
    assert not signing.verify(
        manifest_bytes({**manifest, "report_digest": "0" * 64}), manifest["signature"], public_key
    )
    if fmt == "json":
        assert access_review_digest(json.loads(content)) == digest  # the file is the report that was digested
    else:
        rows = list(csv.DictReader(io.StringIO(content.decode())))
        alice_row = next(r for r in rows if r["username"] == "alice")
        assert alice_row["section"] == "member" and alice_row["role"] == "admin"
        assert alice_row["two_factor"] == "none" and alice_row["flags"] == "missing_2fa"
    (event,) = _events(tenant_a, "access_review.exported")
    assert event.changes["format"] == fmt and event.changes["digest"] == digest
    assert event.actor_label == "olivia"


def test_csv_cells_are_formula_quoted(officer_client: Client, tenant_a: Tenant, alice: Any) -> None:
    evil = '=HYPERLINK("https://evil.example","x")'
    management_token_create(tenant=tenant_a, user=alice, name=evil, expires_at=None)
    response = officer_client.post(url("accounts:access-review-export", tenant_a), {"format": "csv"})
    manifest, content = _unzip(response.content)
    assert manifest["csv_cells"] == "formula-quoted"
    (row,) = [r for r in csv.DictReader(io.StringIO(content.decode())) if r["section"] == "token"]
    assert row["token_name"] == "'" + evil
    assert csv_cell_value(row["token_name"]) == evil


def test_export_refuses_an_unknown_format(officer_client: Client, tenant_a: Tenant) -> None:
    response = officer_client.post(url("accounts:access-review-export", tenant_a), {"format": "xlsx"})
    assert response.status_code == 302
    assert _events(tenant_a, "access_review.exported") == []


# --- sign-off -----------------------------------------------------------------------------------------------
def test_complete_records_the_sign_off_in_the_chain(
    officer_client: Client, tenant_a: Tenant, alice: Any
) -> None:
    digest = access_review_digest(access_review_report(tenant=tenant_a))
    page = url("accounts:access-review", tenant_a)
    response = officer_client.post(
        url("accounts:access-review-complete", tenant_a), {"note": "Asked alice to enrol 2FA.", **CONFIRMED}
    )
    assert response.status_code == 302 and response["Location"] == page
    (event,) = _events(tenant_a, "access_review.completed")
    assert event.actor_label == "olivia"
    assert event.changes == {
        "digest": digest,
        "counts": {"members": 2, "operators": 0, "api_access": 0, "flags": 1},
        "flags": 1,
        "note": "Asked alice to enrol 2FA.",
    }
    with tenant_context(tenant_a):
        (review,) = AccessReview.objects.all()
    assert review.digest == digest and review.audit_seq == event.seq and review.reviewer_label == "olivia"
    body = officer_client.get(page).content.decode()
    assert "Last reviewed by olivia on" in body and "Asked alice to enrol 2FA." in body


def test_complete_needs_the_confirmation(officer_client: Client, tenant_a: Tenant) -> None:
    response = officer_client.post(url("accounts:access-review-complete", tenant_a), {"note": "n"})
    assert response.status_code == 400
    assert 'name="note" value="n"' in response.content.decode()  # carried to the confirmation page
    assert _events(tenant_a, "access_review.completed") == []
    too_long = officer_client.post(
        url("accounts:access-review-complete", tenant_a), {"note": "x" * 2001, **CONFIRMED}
    )
    assert too_long.status_code == 302
    assert _events(tenant_a, "access_review.completed") == []


def test_reviews_are_kept_per_tenant(tenant_a: Tenant, tenant_b: Tenant, officer: Any, charlie: Any) -> None:
    access_review_complete(tenant=tenant_a, actor=officer)
    with tenant_context(tenant_b):
        assert not AccessReview.objects.exists()
    with tenant_context(tenant_a):
        assert AccessReview.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_at_once_are_both_recorded(tenant_a: Tenant, alice: Any, officer: Any) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def review(user: Any) -> None:
        try:
            barrier.wait()
            access_review_complete(tenant=tenant_a, actor=user, note=user.username)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=review, args=(user,)) for user in (alice, officer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = _events(tenant_a, "access_review.completed")
    assert sorted(e.changes["note"] for e in events) == ["alice", "olivia"]
    with tenant_context(tenant_a):
        assert sorted(AccessReview.objects.values_list("reviewer_label", flat=True)) == ["alice", "olivia"]


# --- API ----------------------------------------------------------------------------------------------------
def test_api_report_and_complete(tenant_a: Tenant, officer: Any, alice: Any) -> None:
    api = token_client(issue_token(tenant_a, officer))
    response = api.get(api_url("access-review", tenant_a))
    assert response.status_code == 200
    data = response.json()
    assert {m["username"] for m in data["members"]} == {"alice", "olivia"}
    assert data["last_review"] is None
    assert [t["kind"] for t in data["tokens"]] == ["management"]  # olivia's own token
    report = {k: v for k, v in data.items() if k not in ("digest", "generated_at", "last_review")}
    assert access_review_digest(report) == data["digest"]

    done = api.post(api_url("access-review-complete", tenant_a), {"note": "quarterly"}, format="json")
    assert done.status_code == 201
    assert done.json()["reviewer"] == "olivia" and done.json()["note"] == "quarterly"
    assert api.get(api_url("access-review", tenant_a)).json()["last_review"]["id"] == done.json()["id"]
    (event,) = _events(tenant_a, "access_review.completed")
    assert event.changes["digest"] == done.json()["digest"]


def test_api_refuses_bad_input_roles_and_other_tenants(
    tenant_a: Tenant, tenant_b: Tenant, officer: Any, bob: Any, charlie: Any
) -> None:
    api = token_client(issue_token(tenant_a, officer))
    complete = api_url("access-review-complete", tenant_a)
    assert api.post(complete, {"note": "x" * 2001}, format="json").status_code == 400
    assert api.post(complete, {"digest": "abc"}, format="json").status_code == 400  # unknown field
    viewer = token_client(issue_token(tenant_a, bob))
    assert viewer.get(api_url("access-review", tenant_a)).status_code == 403
    assert viewer.post(complete, {}, format="json").status_code == 403
    other = token_client(issue_token(tenant_b, charlie))
    assert other.get(api_url("access-review", tenant_a)).status_code == 404
    assert other.post(complete, {}, format="json").status_code == 404
    assert _events(tenant_a, "access_review.completed") == []


def test_api_is_in_the_schema(client: Client) -> None:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/tenants/{slug}/access-review/" in paths
    assert "post" in paths["/api/v1/tenants/{slug}/access-review/complete/"]


@pytest.mark.parametrize("language", ["de", "fr", "es", "ja"])
def test_translated(language: str) -> None:
    with translation.override(language):
        for text in ("Access review", "Review completed", "No 2FA", "What the columns mean"):
            assert gettext(text) != text, (language, text)


def test_audit_verify_command_checks_an_access_review_export(
    officer_client: Client, tenant_a: Tenant, tmp_path: Any
) -> None:
    data = officer_client.post(url("accounts:access-review-export", tenant_a), {"format": "json"}).content
    good = tmp_path / "review.zip"
    good.write_bytes(data)
    out = io.StringIO()
    call_command("audit_verify", "--export", str(good), "--public-key", signing.public_key_b64(), stdout=out)
    assert "ok (signed access_review document)" in out.getvalue()

    manifest, content = _unzip(data)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as zf:
        zf.writestr(manifest["file"], content.replace(b'"olivia"', b'"mallory"'))
        zf.writestr("manifest.json", json.dumps(manifest))
    with pytest.raises(CommandError, match="does not match the manifest digest"):
        call_command("audit_verify", "--export", str(tampered))
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as zf:
        zf.writestr(manifest["file"], content)
        zf.writestr("manifest.json", json.dumps({**manifest, "counts": {"members": 0}}))
    with pytest.raises(CommandError, match="signature is invalid"):
        call_command("audit_verify", "--export", str(forged))


def test_page_paginates(
    officer_client: Client, tenant_a: Tenant, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_review_views, "PAGE_SIZE", 2)
    for name in ("m1", "m2", "m3"):
        member(name, "viewer", tenant=tenant_a)
    page = url("accounts:access-review", tenant_a)
    first = officer_client.get(page).content.decode()
    assert first.count("data-username=") == 2 and 'rel="next"' in first
    last = officer_client.get(page, {"page": 3}).content.decode()
    assert last.count("data-username=") == 1  # alice, olivia, m1, m2, m3: the fifth on page 3


def test_api_with_a_session(tenant_a: Tenant, officer: Any) -> None:
    api = session_client(officer)
    assert api.get(api_url("access-review", tenant_a)).status_code == 200
    done = api.post(api_url("access-review-complete", tenant_a), {}, format="json")
    assert done.status_code == 201 and done.json()["note"] == ""


def test_page_query_count_does_not_grow_with_members(
    officer_client: Client, tenant_a: Tenant, member: Any
) -> None:
    def count() -> int:
        with (
            CaptureQueriesContext(connections["default"]) as control,
            CaptureQueriesContext(connections[tenant_a.home_region.db_alias]) as region,
        ):
            assert officer_client.get(url("accounts:access-review", tenant_a)).status_code == 200
        return len(control) + len(region)

    count()  # warm caches (content types, sessions)
    baseline = count()
    for n in range(6):
        user = member(f"p{n}", "admin", tenant=tenant_a)
        management_token_create(tenant=tenant_a, user=user, name=f"t{n}", expires_at=None)
    assert count() == baseline
