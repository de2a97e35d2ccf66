"""The conformance suite every connector must pass, run against its simulator.

Usage (see tests/connectors/): subclass `ConnectorConformance`, provide a `simulator` fixture (a started
`connectors.simulation.Simulator`) and implement `config` and `write_records`.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from connectors.base import CANONICAL_STREAMS, Connector, Cursor, Record
from connectors.erasure import ERASURE_STREAM
from connectors.errors import (
    AuthExpired,
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.http import HttpSession, make_session
from connectors.simulation import MALFORMED_KINDS, Simulator
from connectors.tickets import COMMENT_STREAM

#: What each injected malformed answer must become: a cut-off or non-JSON/XML body is a vendor hiccup
#: (retry later); a well-formed body of the wrong shape is a contract mismatch (permanent, names the call).
MALFORMED_ERRORS: dict[str, type[ConnectorError]] = {
    "truncated": VendorUnavailable,
    "garbage": VendorUnavailable,
    "missing": UnexpectedResponse,
    "wrong_type": UnexpectedResponse,
}
CALLS = ("check_connection", "read", "write")


def simulator_session(simulator: Simulator, *, max_retries: int = 1) -> HttpSession:
    """A session that trusts the simulator's CA and allow-lists loopback, as dev/test settings do."""
    return make_session(
        allow_hosts=["127.0.0.1"], ca_bundle=simulator.ca_bundle, max_retries=max_retries, timeout=(2.0, 10.0)
    )


def closed_port() -> int:
    """Return a loopback port nothing listens on (connection refused), by binding and releasing it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def error_texts(exc: BaseException) -> list[str]:
    """The message, args and those of every chained cause: all of it can end up in a log line."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


def assert_no_secrets(exc: BaseException, secrets: Mapping[str, str]) -> None:
    """Fail when any secret value (configured, or learned by the session, e.g. tokens) appears in `exc`."""
    for text in error_texts(exc):
        for name, value in secrets.items():
            assert value not in text, f"secret {name} leaked into the error: {text[:300]}"


class ConnectorConformance:
    """Shared behaviour checks; subclasses set the class attributes and the two hooks."""

    connector_class: ClassVar[type[Connector]]
    read_stream: ClassVar[str] = "contacts"
    write_stream: ClassVar[str] = "contacts"
    page_size: ClassVar[int] = 200
    #: what the simulator advertises when told retry_after=7, and the scope the connector reports
    expected_rate_limit: ClassVar[tuple[float, str]] = (7.0, "default")
    token_auth: ClassVar[bool] = True  # False for basic-auth-only connectors (no expiry to test)
    reads_retry_transient: ClassVar[bool] = True  # reads are idempotent HTTP calls (GET)
    #: the name an UnexpectedResponse from reading `read_stream` must mention (object, table or operation)
    read_operation: ClassVar[str] = ""

    # hooks -------------------------------------------------------------------------------------

    def config(self, simulator: Simulator, **overrides: Any) -> dict[str, Any]:
        """Return a working config for `simulator`, with `overrides` applied."""
        raise NotImplementedError

    def bad_credentials(self, simulator: Simulator) -> dict[str, Any]:
        """Return a config whose secret is wrong."""
        raise NotImplementedError

    def write_records(self, count: int, tag: str) -> list[dict[str, Any]]:
        """Return `count` canonical records for `write_stream`, with external ids containing `tag`."""
        raise NotImplementedError

    def inject_malformed(self, simulator: Simulator, kind: str) -> None:
        """Make the simulator corrupt its successful answers as `kind` says, until cleared."""
        simulator.inject(malformed={"kind": kind})

    def unreachable_config(self, simulator: Simulator, dead_base_url: str) -> dict[str, Any]:
        """Return a working config whose URLs point at `dead_base_url` (a closed port) instead."""
        config = self.config(simulator, page_size=self.page_size)
        moved = {k: v.replace(simulator.base_url, dead_base_url) if isinstance(v, str) else v
                 for k, v in config.items()}  # fmt: skip
        assert moved != config, "override unreachable_config: no setting holds the simulator's URL"
        return moved

    def secrets(self, config: Mapping[str, Any], session: HttpSession) -> dict[str, str]:
        """Every value that must never appear in an error: configured secrets and learned tokens."""
        found = {
            name: str(config[name]) for name in self.connector_class.sensitive_fields if config.get(name)
        }
        found |= {f"session secret {i}": value for i, value in enumerate(sorted(session.secrets))}
        return found

    # fixtures ----------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _clean_faults(self, simulator: Simulator) -> Iterator[None]:
        simulator.clear_faults()
        yield
        simulator.clear_faults()

    @pytest.fixture
    def connector(self, simulator: Simulator) -> Connector:
        return self.make(simulator)

    def make(self, simulator: Simulator, **overrides: Any) -> Connector:
        config = self.config(simulator, page_size=self.page_size, **overrides)
        return self.connector_class(config, session=simulator_session(simulator))

    def read_all(self, connector: Connector, cursor: Cursor | None = None) -> list[Record]:
        return list(connector.read(self.read_stream, cursor=cursor))

    # checks ------------------------------------------------------------------------------------

    def test_metadata(self) -> None:
        cls = self.connector_class
        assert cls.kind
        assert cls.label
        secret = {f.name for f in cls.config_schema if f.secret}
        assert set(cls.sensitive_fields) == secret
        assert set(cls.default_field_map) <= set(CANONICAL_STREAMS)

    def test_streams_are_canonical(self, connector: Connector) -> None:
        streams = {s.name: s for s in connector.streams()}
        # Write-only side streams (a ticket's comments, issue 18; erasure requests, issue 22) carry no
        # canonical records.
        assert {name for name, s in streams.items() if s.readable} <= set(CANONICAL_STREAMS)
        assert set(streams) <= {*CANONICAL_STREAMS, COMMENT_STREAM, ERASURE_STREAM}
        assert self.read_stream in streams
        assert streams[self.write_stream].writable
        if "orders" in streams:
            assert not streams["orders"].writable

    def test_check_connection(self, connector: Connector) -> None:
        connector.check_connection()

    def test_bad_credentials_are_permanent_and_redacted(self, simulator: Simulator) -> None:
        config = self.bad_credentials(simulator)
        connector = self.connector_class(config, session=simulator_session(simulator))
        with pytest.raises(AuthFailed) as info:
            connector.check_connection()
        assert info.value.permanent
        assert_no_secrets(info.value, self.secrets(config, connector.session))

    def test_unknown_setting_is_rejected(self, simulator: Simulator) -> None:
        with pytest.raises(InvalidConfig, match="no_such_setting"):
            self.connector_class(
                self.config(simulator, no_such_setting=1), session=simulator_session(simulator)
            )

    def test_full_read_pages_oldest_first(self, simulator: Simulator, connector: Connector) -> None:
        records = self.read_all(connector)
        assert len(records) == simulator.count(self.read_stream)
        assert len(records) > 2 * self.page_size, "seed too small to exercise paging"
        ids = [r.external_id for r in records]
        assert len(set(ids)) == len(ids)
        stamps = [r.updated_at for r in records]
        assert stamps == sorted(stamps)
        assert all(r.raw and r.fields for r in records)

    def test_incremental_read_with_equal_timestamps_at_page_boundary(self, connector: Connector) -> None:
        records = self.read_all(connector)
        boundary = self.page_size
        assert records[boundary - 1].updated_at == records[boundary].updated_at, "seed must tie at boundary"
        cursor = Cursor()
        for record in records[:boundary]:
            cursor = cursor.advance(record)
        rest = self.read_all(connector, cursor)
        assert [r.external_id for r in rest] == [r.external_id for r in records[boundary:]]

    def test_incremental_read_sees_changes_only(self, simulator: Simulator, connector: Connector) -> None:
        cursor = Cursor()
        for record in self.read_all(connector):
            cursor = cursor.advance(record)
        touched = simulator.touch(self.read_stream, count=3)
        changed = self.read_all(connector, cursor)
        assert sorted(r.external_id for r in changed) == sorted(touched)
        for record in changed:
            cursor = cursor.advance(record)
        assert self.read_all(connector, cursor) == []

    def test_upsert_is_idempotent(self, simulator: Simulator, connector: Connector) -> None:
        records = self.write_records(3, uuid.uuid4().hex[:10])
        before = simulator.count(self.write_stream)
        first = connector.write(self.write_stream, records)
        assert (first.created, first.updated, first.failed) == (3, 0, [])
        second = connector.write(self.write_stream, records)
        assert (second.created, second.updated, second.failed) == (0, 3, [])
        assert [o.vendor_id for o in first.outcomes] == [o.vendor_id for o in second.outcomes]
        assert simulator.count(self.write_stream) == before + 3

    def test_read_only_stream_refuses_writes(self, connector: Connector) -> None:
        if "orders" not in {s.name for s in connector.streams()}:
            pytest.skip("no orders stream")
        with pytest.raises(ConnectorError) as info:
            connector.write("orders", [{"external_id": "x", "fields": {}}])
        assert info.value.permanent

    def test_rate_limit_maps_to_rate_limited(self, simulator: Simulator, connector: Connector) -> None:
        connector.check_connection()
        simulator.inject(rate_limit={"count": 3, "retry_after": 7})
        with pytest.raises(RateLimited) as info:
            self.read_all(connector)
        assert not info.value.permanent
        assert (info.value.retry_after, info.value.scope) == self.expected_rate_limit

    def test_server_errors_map_to_vendor_unavailable(
        self, simulator: Simulator, connector: Connector
    ) -> None:
        connector.check_connection()
        simulator.inject(errors=[{"status": 503}])
        with pytest.raises(VendorUnavailable) as info:
            self.read_all(connector)
        assert not info.value.permanent

    def test_single_transient_error_is_retried(self, simulator: Simulator, connector: Connector) -> None:
        if not self.reads_retry_transient:
            pytest.skip("reads are not idempotent HTTP calls for this vendor")
        connector.check_connection()
        simulator.inject(errors=[{"status": 502, "count": 1}])
        assert len(self.read_all(connector)) == simulator.count(self.read_stream)

    def test_outage_maps_to_vendor_unavailable(self, simulator: Simulator, connector: Connector) -> None:
        simulator.inject(outage="reset")
        with pytest.raises(VendorUnavailable):
            connector.check_connection()

    def test_expired_token_reauthenticates_once(self, simulator: Simulator, connector: Connector) -> None:
        if not self.token_auth:
            pytest.skip("no tokens")
        connector.check_connection()
        simulator.expire_tokens()
        assert len(self.read_all(connector)) == simulator.count(self.read_stream)

    def test_token_that_never_works_raises_auth_expired(
        self, simulator: Simulator, connector: Connector
    ) -> None:
        if not self.token_auth:
            pytest.skip("no tokens")
        connector.check_connection()
        simulator.inject(token_ttl=0, expire_tokens=True)
        with pytest.raises(AuthExpired):
            self.read_all(connector)

    # bad input from the vendor or the network ---------------------------------------------------

    def run_call(self, connector: Connector, call: str) -> None:
        if call == "check_connection":
            connector.check_connection()
        elif call == "read":
            self.read_all(connector)
        else:
            connector.write(self.write_stream, self.write_records(1, uuid.uuid4().hex[:10]))

    @pytest.mark.parametrize("call", CALLS)
    @pytest.mark.parametrize("kind", MALFORMED_KINDS)
    def test_malformed_answer_is_a_typed_error(
        self, simulator: Simulator, connector: Connector, kind: str, call: str
    ) -> None:
        connector.check_connection()  # logged in: only the data call gets the bad answer
        self.inject_malformed(simulator, kind)
        with pytest.raises(ConnectorError) as info:
            self.run_call(connector, call)
        expected = MALFORMED_ERRORS[kind]
        error = info.value
        assert isinstance(error, expected), f"{type(error).__name__}: {error}"
        assert error.permanent is (expected is UnexpectedResponse)
        assert str(error).startswith(connector.label)
        if expected is UnexpectedResponse and call == "read" and self.read_operation:
            assert self.read_operation in str(error)
        config = self.config(simulator, page_size=self.page_size)
        assert_no_secrets(error, self.secrets(config, connector.session))

    def test_unreachable_host_is_vendor_unavailable(self, simulator: Simulator) -> None:
        dead = f"{simulator.scheme}://127.0.0.1:{closed_port()}"
        config = self.unreachable_config(simulator, dead)
        connector = self.connector_class(config, session=simulator_session(simulator))
        with pytest.raises(VendorUnavailable) as info:
            connector.check_connection()
        assert not info.value.permanent
        assert dead.split("://")[1] in str(info.value)
        assert_no_secrets(info.value, self.secrets(config, connector.session))
