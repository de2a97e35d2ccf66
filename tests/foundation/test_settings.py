"""Settings refuse malformed values, production requires its env, check --deploy is clean."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from hub.settings.env import env_bool, env_db, env_int, env_regions
from tests.fixtures.processes import PRODUCTION_ENV, manage


@pytest.mark.parametrize(
    ("name", "value", "reader", "fragment"),
    [
        ("HUB_T_INT", "ten", lambda n: env_int(n, 1), "expected an integer"),
        ("HUB_T_INT", "-1", lambda n: env_int(n, 1, minimum=0), "must be >= 0"),
        ("HUB_T_BOOL", "maybe", lambda n: env_bool(n, False), "expected a boolean"),
        ("HUB_T_REGIONS", "eu,EU!", lambda n: env_regions(n, ["eu"]), "region code"),
        ("HUB_T_REGIONS", "eu,eu", lambda n: env_regions(n, ["eu"]), "twice"),
        ("HUB_T_DB", "mysql://u:p@h/db", env_db, "postgres"),
        ("HUB_T_DB", "not a url", env_db, "HUB_T_DB"),
    ],
)
def test_malformed_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    reader: Callable[[str], object],
    fragment: str,
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured) as info:
        reader(name)
    assert name in str(info.value)
    assert fragment in str(info.value)


def test_passwords_are_hashed_with_argon2_in_real_settings() -> None:
    from hub.settings import base

    assert base.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")
    assert "django.contrib.postgres" in settings.INSTALLED_APPS


@pytest.mark.parametrize(
    "missing",
    [
        "DJANGO_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "REGION_US_DATABASE_URL",
        "EMAIL_URL",
        "DEFAULT_FROM_EMAIL",
    ],
)
def test_production_refuses_to_start_without_required_env(missing: str) -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = manage(env, "check")
    assert result.returncode != 0
    assert missing in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]


def test_production_check_deploy_is_clean() -> None:
    result = manage(PRODUCTION_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_seed_demo_refuses_production_settings() -> None:
    result = manage(PRODUCTION_ENV, "seed_demo")
    assert result.returncode != 0
    assert "refuses to run with production settings" in result.stderr


def test_production_refuses_a_malformed_master_key() -> None:
    result = manage({**PRODUCTION_ENV, "HUB_MASTER_KEYS": "k1:tooshort"}, "check")
    assert result.returncode != 0
    assert "HUB_MASTER_KEYS" in result.stderr
    assert "tooshort" not in result.stderr


@pytest.mark.parametrize("raw", ["abc", "nan", "-0.1", "1.5"])
def test_malformed_float_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from hub.settings.env import env_float

    monkeypatch.setenv("HUB_CHAT_MIN_RELEVANCE", raw)
    with pytest.raises(ImproperlyConfigured, match="HUB_CHAT_MIN_RELEVANCE"):
        env_float("HUB_CHAT_MIN_RELEVANCE", 0.28, minimum=0.0, maximum=1.0)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("ja=0.4", "JSON object"),
        ("[0.4]", "JSON object"),
        ('{"Japanese": 0.4}', "base language code"),
        ('{"ja": "high"}', "number from 0.0 to 1.0"),
        ('{"ja": 1.5}', "number from 0.0 to 1.0"),
        ('{"ja": true}', "number from 0.0 to 1.0"),
    ],
)
def test_malformed_per_language_thresholds_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, fragment: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from hub.settings.env import env_language_floats

    monkeypatch.setenv("HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE", raw)
    with pytest.raises(ImproperlyConfigured, match="HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE") as caught:
        env_language_floats("HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE", minimum=0.0, maximum=1.0)
    assert fragment in str(caught.value)


def test_per_language_thresholds_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.settings.env import env_language_floats

    monkeypatch.setenv("HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE", '{"ja": 0.45, "de": 0}')
    assert env_language_floats("HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE", minimum=0.0, maximum=1.0) == {
        "ja": 0.45,
        "de": 0.0,
    }
    monkeypatch.delenv("HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE")
    assert env_language_floats("HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE", minimum=0.0, maximum=1.0) == {}


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("consolemail://", "must start with one of smtp://"),
        ("smtp://hub:mail-password@smtp.example.com:25", "clear text"),
        ("smtp+tls://hub:mail-password@smtp.example.com:notaport", "not a valid e-mail URL"),
        ("smtp+tls://", "must name the SMTP host"),
    ],
)
def test_production_refuses_an_email_url_that_would_leak(url: str, fragment: str) -> None:
    """Console mail prints reset links into the logs; clear-text SMTP sends the password over the network."""
    result = manage({**PRODUCTION_ENV, "EMAIL_URL": url}, "check")
    assert result.returncode != 0
    assert "EMAIL_URL" in result.stderr and fragment in result.stderr
    assert "mail-password" not in result.stderr


def test_email_url_becomes_the_smtp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.settings.env import env_email

    monkeypatch.setenv("EMAIL_URL", "smtp+ssl://hub%40example.com:p%2Fw@smtp.example.com:465")
    assert env_email("EMAIL_URL", smtp_only=True) == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": 465,
        "EMAIL_HOST_USER": "hub@example.com",
        "EMAIL_HOST_PASSWORD": "p/w",
        "EMAIL_USE_SSL": True,
    }
    monkeypatch.setenv("EMAIL_URL", "smtp://127.0.0.1:2525")
    assert env_email("EMAIL_URL", smtp_only=True)["EMAIL_PORT"] == 2525  # type: ignore[index]
