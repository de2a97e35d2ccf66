"""Environment reading that refuses malformed values instead of guessing.

django-environ parses the values; these helpers wrap it so that every failure names the variable and
raises ImproperlyConfigured, which Django reports at start-up.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

BASE_DIR = Path(__file__).resolve().parents[2]
_REGION_CODE = re.compile(r"^[a-z][a-z0-9]{1,15}$")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")


def _fail(name: str, problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"Setting {name}: {problem}")


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise _fail(name, "is required but not set")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise _fail(name, f"expected a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _fail(name, f"expected an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise _fail(name, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise _fail(name, f"must be <= {maximum}, got {value}")
    return value


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _fail(name, f"expected a number, got {raw!r}") from None
    if value != value or (minimum is not None and value < minimum):  # NaN compares false with everything
        raise _fail(name, f"must be >= {minimum}, got {raw}")
    if maximum is not None and value > maximum:
        raise _fail(name, f"must be <= {maximum}, got {value}")
    return value


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_RATE_UNITS |= {"d": 86400, "day": 86400}


def env_rate(name: str, default: str) -> tuple[int, int]:
    """A rate such as "120/min", "10/s" or "1000/5min", as (requests, seconds)."""
    raw = os.environ.get(name, default)
    match = _RATE.match(raw)
    if match is None or int(match[1]) < 1 or int(match[2] or 1) < 1:
        raise _fail(name, f"expected a rate such as 120/min or 10/s, got {raw!r}")
    return int(match[1]), int(match[2] or 1) * _RATE_UNITS[match[3]]


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_floats(name: str, default: list[float], *, length: int) -> list[float]:
    """Exactly `length` comma-separated numbers (weights, thresholds)."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    try:
        values = [float(item) for item in raw.split(",")]
    except ValueError:
        raise _fail(name, f"expected {length} comma-separated numbers, got {raw!r}") from None
    if len(values) != length or any(v != v for v in values):
        raise _fail(name, f"expected {length} comma-separated numbers, got {raw!r}")
    return values


def env_language_floats(name: str, *, minimum: float, maximum: float) -> dict[str, float]:
    """A JSON object of base language codes to numbers, e.g. {"ja": 0.45} (per-language thresholds)."""
    raw = os.environ.get(name) or "{}"
    example = '{"ja": 0.45, "de": 0.3}'
    try:
        value = json.loads(raw)
    except ValueError:
        raise _fail(name, f"expected a JSON object such as {example}") from None
    if not isinstance(value, dict):
        raise _fail(name, f"expected a JSON object such as {example}")
    out: dict[str, float] = {}
    for code, number in value.items():
        if not isinstance(code, str) or not _LANGUAGE_CODE.match(code):
            raise _fail(name, f"{code!r} is not a base language code such as 'de'")
        is_number = isinstance(number, int | float) and not isinstance(number, bool)
        if not is_number or not minimum <= number <= maximum:
            raise _fail(name, f"the value for {code!r} must be a number from {minimum} to {maximum}")
        out[code] = float(number)
    return out


def env_networks(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of CIDR networks (a bare address means that one host)."""
    networks = env_list(name, default)
    for item in networks:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise _fail(name, f"{item!r} is not an IP network such as 10.0.0.0/8") from None
    return networks


def env_regions(name: str, default: list[str]) -> list[str]:
    regions = env_list(name, default)
    if not regions:
        raise _fail(name, "must name at least one region")
    for code in regions:
        if not _REGION_CODE.match(code):
            raise _fail(
                name, f"region code {code!r} must be 2-16 lowercase letters/digits, starting with a letter"
            )
    if len(set(regions)) != len(regions):
        raise _fail(name, "lists a region twice")
    return regions


def env_db(name: str) -> dict[str, Any]:
    """Parse a database URL; only PostgreSQL is supported (pgvector, triggers, advisory locks)."""
    raw = env_str(name)
    try:
        config = environ.Env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types for garbage input
        raise _fail(name, f"is not a valid database URL ({type(exc).__name__})") from None
    if config.get("ENGINE") != "django.db.backends.postgresql":
        raise _fail(name, "must be a postgres:// URL (the hub needs PostgreSQL with pgvector)")
    if not config.get("NAME"):
        raise _fail(name, "must name a database")
    return config


def env_url(name: str, schemes: tuple[str, ...]) -> str:
    raw = env_str(name)
    if not raw.startswith(tuple(f"{s}://" for s in schemes)):
        raise _fail(name, f"must start with one of {', '.join(s + '://' for s in schemes)}")
    return raw


def hub_home() -> Path:
    """Return the directory holding local service state (.hub/ unless HUB_HOME says otherwise)."""
    return Path(os.environ.get("HUB_HOME", str(BASE_DIR / ".hub"))).resolve()


def embedded_state() -> dict[str, Any] | None:
    """Read what `manage.py services up` recorded (ports, passwords), or None when nothing runs."""
    path = hub_home() / "services.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"{path} is unreadable ({exc}); run `python manage.py services down` then `up` again"
        ) from None


SMTP_SCHEMES = ("smtp", "smtp+tls", "smtps", "smtp+ssl")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def env_email(name: str, *, smtp_only: bool) -> dict[str, Any] | None:
    """Parse an e-mail URL (django-environ's, e.g. smtp+tls://user:pass@host:587) into EMAIL_* settings.

    None when unset. The value carries a password, so no error message ever repeats it. With `smtp_only`
    (production) only SMTP is accepted, and plain smtp:// only to a loopback relay or without credentials:
    a password never crosses the network in clear text.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    scheme = raw.partition("://")[0].lower()
    allowed = SMTP_SCHEMES if smtp_only else tuple(environ.Env.EMAIL_SCHEMES)
    if scheme not in allowed:
        raise _fail(name, f"must start with one of {', '.join(s + '://' for s in allowed)}")
    try:
        config = environ.Env.email_url_config(raw)
    except Exception:  # django-environ raises several types for garbage input (bad port, bad scheme)
        raise _fail(name, "is not a valid e-mail URL") from None
    if scheme in SMTP_SCHEMES:
        if not config.get("EMAIL_HOST"):
            raise _fail(name, "must name the SMTP host")
        clear_text = scheme == "smtp" and config.get("EMAIL_HOST_PASSWORD")
        if smtp_only and clear_text and config["EMAIL_HOST"] not in _LOOPBACK_HOSTS:
            raise _fail(name, "would send the password in clear text: use smtp+tls:// or smtp+ssl://")
    settings = {key: value for key, value in config.items() if key.startswith("EMAIL_")}
    if scheme != "filemail":
        settings.pop("EMAIL_FILE_PATH", None)
    return {key: value for key, value in settings.items() if value not in (None, "")}
