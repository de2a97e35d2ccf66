"""The proofs themselves (pure functions, no database): the user hash and the identity JWT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apps.chat.services import identity as idn
from apps.chat.services.identity import Identity, IdentityInvalid
from tests.identity.helpers import SECRET, id_token

CHANNEL = "6a3f4f0e-52b5-4d55-9a55-6f1c3cf3d001"
OTHER_CHANNEL = "0b1e5a55-1111-4c3d-8e3e-111111111111"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "user-1", "aud": CHANNEL, "iat": now, "exp": now + 600} | extra


def _verify(token: str, **kwargs: Any) -> Identity:
    return idn.verify_identity_token(secret=SECRET, token=token, audience=CHANNEL, **kwargs)


def _reason(call: Any) -> str:
    with pytest.raises(IdentityInvalid) as caught:
        call()
    # One message for every failure: the client never learns which part of the proof failed.
    assert caught.value.errors and str(caught.value) == "The identity proof is not valid."
    return caught.value.reason


# --- user hash --------------------------------------------------------------------------------------------
def test_user_hash_is_hex_hmac_sha256_of_the_user_id_as_a_site_computes_it() -> None:
    expected = hmac.new(SECRET.encode(), b"user-42", hashlib.sha256).hexdigest()
    assert idn.user_hash(secret=SECRET, user_id="user-42") == expected
    assert idn.verify_user_hash(secret=SECRET, user_id="user-42", provided=expected) == Identity("user-42")
    upper = idn.verify_user_hash(secret=SECRET, user_id="user-42", provided=expected.upper())
    assert upper.user_id == "user-42"


def test_user_hash_invalid_other_user_other_channels_secret_and_malformed_are_refused() -> None:
    good = idn.user_hash(secret=SECRET, user_id="user-42")
    other_secret = idn.user_hash(secret="another channel's secret", user_id="user-42")
    verify = idn.verify_user_hash
    assert _reason(lambda: verify(secret=SECRET, user_id="user-43", provided=good)) == "signature"
    assert _reason(lambda: verify(secret=SECRET, user_id="user-42", provided=other_secret)) == "signature"
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert _reason(lambda: verify(secret=SECRET, user_id="user-42", provided=flipped)) == "signature"
    for bad in ("", "zz" * 32, good[:-2], good + "00"):
        assert _reason(lambda b=bad: verify(secret=SECRET, user_id="user-42", provided=b)) == "malformed"
    assert _reason(lambda: verify(secret="", user_id="user-42", provided=good)) == "no_secret"
    assert _reason(lambda: verify(secret=SECRET, user_id="", provided=good)) == "no_user"


def test_user_hash_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(idn.hmac, "compare_digest", spy)
    good = idn.user_hash(secret=SECRET, user_id="u")
    idn.verify_user_hash(secret=SECRET, user_id="u", provided=good)
    with pytest.raises(IdentityInvalid):
        idn.verify_user_hash(secret=SECRET, user_id="u", provided="0" * 64)
    assert calls == [(good, good), (good, "0" * 64)]


# --- JWT --------------------------------------------------------------------------------------------------
def test_valid_token_gives_subject_and_normalized_email_and_phone() -> None:
    token = id_token(CHANNEL, sub="user-7", email=" Ann@Example.COM ", phone="+49 (151) 1234-5678")
    assert _verify(token) == Identity(user_id="user-7", email="ann@example.com", phone="+4915112345678")
    # Without contact claims: a verified user id only.
    assert _verify(id_token(CHANNEL, sub="user-8")) == Identity(user_id="user-8")


def test_expired_token_is_refused_after_the_leeway_only() -> None:
    now = time.time()
    just_expired = id_token(CHANNEL, issued=now - 630, lifetime=600)  # expired 30 s ago: within the leeway
    assert _verify(just_expired).user_id == "user-1"
    expired = id_token(CHANNEL, issued=now - 700, lifetime=600)  # 100 s ago
    assert _reason(lambda: _verify(expired)) == "expired"


def test_wrong_audience_is_refused() -> None:
    assert _reason(lambda: _verify(id_token(OTHER_CHANNEL))) == "audience"
    no_aud = jwt.encode({k: v for k, v in _claims().items() if k != "aud"}, SECRET, algorithm="HS256")
    assert _reason(lambda: _verify(no_aud)) in {"audience", "claims"}


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    for token in (f"{header}.{body}.", f"{header}.{body}"):
        assert _reason(lambda t=token: _verify(t)) in {"algorithm", "malformed"}


def test_hs_rs_confusion_is_refused() -> None:
    """An RS256 token (even a well-signed one) is refused, and so is an HS256 token signed with a public key
    as the HMAC secret: only HS256 with the channel's secret verifies."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs_token = jwt.encode(_claims(), private, algorithm="RS256")
    assert _reason(lambda: _verify(rs_token)) == "algorithm"
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    signature = _b64(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    assert _reason(lambda: _verify(f"{header}.{body}.{signature}")) == "signature"
    # The header's alg is checked before anything else: RS256 with an HMAC signature is refused too.
    rs_header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    hs_sig = _b64(hmac.new(SECRET.encode(), f"{rs_header}.{body}".encode(), hashlib.sha256).digest())
    assert _reason(lambda: _verify(f"{rs_header}.{body}.{hs_sig}")) == "algorithm"


def test_tampered_token_is_refused() -> None:
    token = id_token(CHANNEL, sub="user-1", email="ann@example.com")
    header, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["email"] = "mallory@example.com"
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert _reason(lambda: _verify(forged)) == "signature"
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    assert _reason(lambda: _verify(f"{header}.{body}.{flipped}")) == "signature"
    assert _reason(
        lambda: idn.verify_identity_token(
            secret="another channel secret, long enough.", token=token, audience=CHANNEL
        )
    ) == ("signature")
    assert _reason(lambda: _verify("not-a-jwt")) == "malformed"
    assert _reason(lambda: _verify("x" * 5000)) == "malformed"


def test_too_long_lifetime_and_missing_or_future_claims_are_refused() -> None:
    assert _verify(id_token(CHANNEL, lifetime=3600)).user_id == "user-1"
    assert _reason(lambda: _verify(id_token(CHANNEL, lifetime=3601))) == "lifetime"
    assert _reason(lambda: _verify(id_token(CHANNEL, lifetime=86400 * 365))) == "lifetime"
    for missing in ("exp", "iat", "sub"):
        claims = {k: v for k, v in _claims().items() if k != missing}
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        assert _reason(lambda t=token: _verify(t)) == "claims", missing
    future = id_token(CHANNEL, issued=time.time() + 600, lifetime=600)
    assert _reason(lambda: _verify(future)) in {"claims", "malformed"}
    for sub in ("", "   ", 42):
        token = jwt.encode(_claims(sub=sub), SECRET, algorithm="HS256")
        assert _reason(lambda t=token: _verify(t)) in {"claims", "malformed"}
    token = id_token(CHANNEL)
    assert _reason(lambda: idn.verify_identity_token(secret="", token=token, audience=CHANNEL)) == "no_secret"


# --- normalization and platform identities ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+49 151 1234 5678", "+4915112345678"),
        ("0049-151-12345678", "+4915112345678"),
        ("(+1) 415.555.0100", "+14155550100"),
        ("0151 12345678", ""),  # national: which country? never matches
        ("4915112345678", ""),  # no "+": not clearly international
        ("+0151", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_phone_normalization_is_e164_or_nothing(raw: Any, expected: str) -> None:
    assert idn.normalize_phone(raw) == expected


def test_email_normalization_case_folds() -> None:
    assert idn.normalize_email("  Ann.Smith@Example.COM ") == "ann.smith@example.com"
    assert idn.normalize_email("not an address") == ""


def test_platform_identities() -> None:
    wa = idn.platform_identity(channel_kind="whatsapp", sender="4915112345678")
    assert wa == Identity(user_id="+4915112345678", phone="+4915112345678")
    assert idn.platform_identity(channel_kind="sms", sender="+1 415 555 0100") == Identity(
        user_id="+14155550100", phone="+14155550100"
    )
    slack = idn.platform_identity(channel_kind="slack", sender="U024BE7LH")
    assert slack == Identity(user_id="slack:U024BE7LH") and not slack.has_contact
    assert idn.platform_identity(channel_kind="web", sender="anyone") is None
    assert idn.platform_identity(channel_kind="whatsapp", sender="garbage") is None


def test_identity_round_trips_as_json_and_matches_normalized_contacts() -> None:
    ident = Identity(user_id="u", email="ann@example.com", phone="+4915112345678")
    assert Identity.from_json(ident.as_json()) == ident
    for stored in ("", "[1]", "{", None):
        assert Identity.from_json(stored) is None
    assert ident.matches(emails={"ann@example.com"}, phones=set())
    assert ident.matches(emails=set(), phones={"+4915112345678"})
    assert not ident.matches(emails={"bob@example.com"}, phones={"+4915100000000"})
    assert not Identity(user_id="u").matches(emails={""}, phones={""})
