"""Deadlines on every dependency call, and which failures mean "a dependency is down" (answered with 503).

Postgres. The server enforces `statement_timeout`, with a budget per kind of work
(HUB_DB_STATEMENT_TIMEOUT_*): the connection's default (libpq `options`, hub/settings) is the chat budget, so
a chat turn never pays a round trip for it; a console page or management API request SETs its own budget
lazily, on the first statement it runs on a connection, and puts the process default back when it ends
(`statement_class`). Celery workers and management commands SET theirs once per new connection
(apps/core/pgbackend). A stalled server (paused, partitioned) enforces nothing, and its kernel still
acknowledges every packet, so no TCP timeout fires either: a watchdog thread per process severs (shuts down)
the socket of any database call that has run longer than its budget plus HUB_DB_CLIENT_GRACE_MS, and psycopg
raises OperationalError at once. The watchdog keeps only the calls in flight of this process's own threads:
bookkeeping, not shared state.

Redis. Every client is built with short connect and socket timeouts (`redis_options`), no retry on a timeout
and one immediate retry on a broken connection (a restarted Redis leaves stale pooled sockets). After a
failure this process skips Redis for HUB_REDIS_DOWN_SECONDS (`redis_health`), so a stalled Redis costs one
socket timeout, not one per call: like a connection pool's view of its server, a process-local observation
that another process may see differently without harm.

What a failure becomes: `dependency_of` names the dependency of an exception ("postgres", "redis", "broker"),
apps/core/api.py and apps/core/views.py answer 503 with Retry-After, never a 500. What degrades instead of
failing is decided where the call is made, and listed in docs/operations.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from django.db import utils as db_utils
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

#: Kinds of work with a statement budget of their own (HUB_DB_STATEMENT_TIMEOUT_<KIND>_MS).
STATEMENT_CLASSES = ("chat", "console", "api", "task", "command")
DEPENDENCIES = ("postgres", "redis", "broker")


class DependencyUnavailable(Exception):
    """A dependency is down or too slow, and what needed it cannot be done without it: answer 503."""

    def __init__(self, dependency: str, reason: str = "") -> None:
        super().__init__(f"{dependency} unavailable{': ' + reason if reason else ''}")
        self.dependency = dependency


class RedisSkipped(redis.ConnectionError):
    """Raised instead of calling Redis while this process considers it down (see `redis_health`)."""


# --- which failures are a dependency being down -----------------------------------------------------------


def dependency_of(exc: BaseException) -> tuple[str, str] | None:
    """("postgres" | "redis" | "broker", "timeout" | "unavailable") when `exc` means a dependency failed.

    Programming errors (a bad query, a Redis ResponseError) are not dependency failures: they stay 500s.
    """
    import psycopg
    from kombu.exceptions import OperationalError as KombuOperationalError

    if isinstance(exc, DependencyUnavailable):
        return exc.dependency, "unavailable"
    if isinstance(exc, db_utils.OperationalError | db_utils.InterfaceError | psycopg.OperationalError):
        cause = exc.__cause__ or exc
        timed_out = isinstance(cause, psycopg.errors.QueryCanceled) or getattr(exc, "hub_severed", False)
        return "postgres", "timeout" if timed_out else "unavailable"
    if isinstance(exc, psycopg.InterfaceError):
        return "postgres", "unavailable"
    if isinstance(exc, redis.TimeoutError):
        return "redis", "timeout"
    if isinstance(exc, redis.ConnectionError):
        return "redis", "unavailable"
    if isinstance(exc, KombuOperationalError):
        return "broker", "unavailable"
    return None


def retry_after() -> int:
    """Seconds a client should wait before retrying a request refused because a dependency is down."""
    return int(settings.HUB_RETRY_AFTER_SECONDS)


# --- Redis ------------------------------------------------------------------------------------------------


def redis_options() -> dict[str, Any]:
    """Keyword arguments for every redis-py client and pool of the web and task paths (not the broker)."""
    return {
        "socket_connect_timeout": settings.HUB_REDIS_CONNECT_TIMEOUT,
        "socket_timeout": settings.HUB_REDIS_SOCKET_TIMEOUT,
        "health_check_interval": settings.HUB_REDIS_HEALTH_CHECK_INTERVAL,
        # One immediate retry on a broken connection, none on a timeout (a stall would double the wait).
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    }


class LocalHealth:
    """This process's view of a dependency: skip it a moment after a failure; how long it has been down."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._skip_until = 0.0
        self._down_since: float | None = None

    def check(self) -> None:
        """Raise RedisSkipped while a recent failure says the call would only wait for its timeout."""
        if self._skip_until and time.monotonic() < self._skip_until:
            raise RedisSkipped(f"{self.name} marked down by this process")

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            logger.warning("%s unreachable: %s", self.name, type(exc).__name__)
        self._skip_until = now + float(settings.HUB_REDIS_DOWN_SECONDS)
        if not isinstance(exc, RedisSkipped):
            from apps.observability import metrics

            kind = dependency_of(exc)
            metrics.record_dependency_error(dependency=self.name, kind=kind[1] if kind else "unavailable")

    def succeeded(self) -> None:
        if self._down_since is not None:
            logger.warning("%s reachable again", self.name)
        self._down_since = None
        self._skip_until = 0.0

    def down_for(self) -> float:
        """Seconds since this process first saw the current outage (0 when it saw none)."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since


redis_health = LocalHealth("redis")


@contextlib.contextmanager
def redis_call() -> Iterator[None]:
    """Guard one Redis call: skipped while marked down; a connection failure or timeout marks it down."""
    redis_health.check()
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        redis_health.failed(exc)
        raise
    redis_health.succeeded()


_optional_cache: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_cache_opt", default=None)


@contextlib.contextmanager
def optional_cache(feature: str) -> Iterator[None]:
    """Inside this block the cache is only an optimisation: while Redis is down a read is a miss and a write
    is skipped (counted as `feature` degraded). Invalidations (delete, incr, guard_and_delete) still fail."""
    token = _optional_cache.set(feature)
    try:
        yield
    finally:
        _optional_cache.reset(token)


def cache_optional_feature() -> str | None:
    """The feature of the enclosing `optional_cache` block, if any."""
    return _optional_cache.get()


# --- Postgres: statement budgets --------------------------------------------------------------------------

_process_class = "command"  # "chat" in web processes (hub/wsgi.py), "task" in Celery worker processes
_request_class: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_stmt_class", default=None)


def process_class_set(name: str) -> None:
    """Declare what this process does (at start-up): its connections default to that kind's budget."""
    global _process_class
    if name not in STATEMENT_CLASSES:
        raise ValueError(f"unknown statement class {name!r}")
    _process_class = name


def process_class() -> str:
    return _process_class


def budget_ms(name: str) -> int:
    """The statement budget of a kind of work in milliseconds (0: none)."""
    return int(getattr(settings, f"HUB_DB_STATEMENT_TIMEOUT_{name.upper()}_MS"))


def current_class() -> str:
    return _request_class.get() or _process_class


def _set_budget(connection: Any, name: str) -> None:
    # Straight on the psycopg connection: bookkeeping, not one of the request's queries (query counts).
    connection.connection.execute(f"SET statement_timeout = {budget_ms(name):d}")
    connection.hub_statement_class = name


def connection_init(connection: Any) -> None:
    """Give a new connection this process's budget (web processes: the connection default, nothing to do)."""
    if _process_class != "chat":
        with db_call(connection):
            _set_budget(connection, _process_class)
            if not connection.connection.autocommit:  # Django switches autocommit on right after this
                connection.connection.commit()
    else:
        connection.hub_statement_class = "chat"


def execute_guard(execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """Execute wrapper on every connection: switch the budget when this request's differs, watch the call."""
    connection = context["connection"]
    wanted = current_class()
    with db_call(connection):
        if getattr(connection, "hub_statement_class", wanted) != wanted:
            _set_budget(connection, wanted)
        return execute(sql, params, many, context)


@contextlib.contextmanager
def statement_class(name: str) -> Iterator[None]:
    """Run a request with the statement budget of `name`; connections get the process default back after."""
    token = _request_class.set(name)
    try:
        yield
    finally:
        _request_class.reset(token)
        if name != _process_class:
            for connection in connections.all(initialized_only=True):
                if connection.connection is None or getattr(connection, "hub_statement_class", None) in (
                    None,
                    _process_class,
                ):
                    continue
                try:
                    with db_call(connection):
                        _set_budget(connection, _process_class)
                except Exception:  # a broken connection: never reuse it with the wrong budget
                    connection.close()


# --- Postgres: the client-side watchdog -------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    connection: Any
    since: float
    limit: float
    seq: int


_calls: dict[int, _Call] = {}  # thread ident -> its database call in flight
_watchdog_pid = 0
_watchdog_lock = threading.Lock()
_seq = 0


def _ensure_watchdog() -> None:
    global _watchdog_pid
    if _watchdog_pid == os.getpid():
        return
    with _watchdog_lock:
        if _watchdog_pid == os.getpid():
            return
        _calls.clear()  # a forked child inherits the parent's table, not its threads
        threading.Thread(target=_watch_loop, name="hub-db-watchdog", daemon=True).start()
        _watchdog_pid = os.getpid()


def _watch_loop() -> None:
    while True:
        time.sleep(0.1)
        now = time.monotonic()
        for call in list(_calls.values()):
            if now - call.since > call.limit:
                _sever(call)


def _sever(call: _Call) -> None:
    """Shut down the socket of an overdue call: the blocked read returns, psycopg raises OperationalError."""
    for ident, current in list(_calls.items()):
        if current is call and current.seq == call.seq:
            _calls.pop(ident, None)
    raw = call.connection.connection
    try:
        fd = raw.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
    except Exception:  # already closed: nothing is waiting on it
        return
    # Flag first: the blocked read returns the moment the socket shuts down, and the caller's
    # except clause must already see why (otherwise a timeout is reported as "unavailable").
    call.connection.hub_severed = True
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    logger.warning(
        "database call overran its deadline; connection severed",
        extra={"alias": call.connection.alias, "limit_s": round(call.limit, 3)},
    )


@contextlib.contextmanager
def db_call(connection: Any, *, limit: float | None = None) -> Iterator[None]:
    """Watch one call on `connection`: sever it when it outlives `limit` (default: the budget plus grace)."""
    global _seq
    if limit is None:
        budget = budget_ms(current_class())
        limit = (budget + settings.HUB_DB_CLIENT_GRACE_MS) / 1000 if budget else 0.0
    ident = threading.get_ident()
    if not limit or ident in _calls:  # no deadline, or an outer call is watched already
        yield
        return
    _ensure_watchdog()
    _seq += 1
    _calls[ident] = _Call(connection, time.monotonic(), limit, _seq)
    try:
        yield
    except db_utils.Error as exc:
        if getattr(connection, "hub_severed", False):
            exc.hub_severed = True  # type: ignore[attr-defined]
        raise
    finally:
        _calls.pop(ident, None)
        connection.hub_severed = False


def request_class(path: str) -> str:
    """The kind of work a request path is: chat API or inbound webhook (answered fast, the chat budget),
    other API (management), or console page."""
    if path.startswith(("/api/v1/conversations", "/hooks/")):
        return "chat"
    if path.startswith("/api/"):
        return "api"
    return "console"
