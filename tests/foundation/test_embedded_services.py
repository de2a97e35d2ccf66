"""`services up|down|status` on a throw-away HUB_HOME: idempotent, recovers from crashes, stops by pid."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from apps.core.embedded import EmbeddedServices, Proc, ServiceError, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def services(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmbeddedServices]:
    for name in ("DATABASE_URL", "REDIS_URL", "HUB_PG_PORT", "HUB_REDIS_PORT"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("hubhome")
    lines: list[str] = []
    svc = EmbeddedServices(home, ["eu", "us"], log=lines.append)
    svc.lines = lines  # type: ignore[attr-defined]
    yield svc
    svc.down(purge=True)


def test_up_is_idempotent_and_down_stops_exactly_what_up_started(services: EmbeddedServices) -> None:
    state = services.up(ephemeral=True, free_ports=True)
    pg, rd = state["postgres"], state["redis"]
    assert Proc(pg["pid"], pg["create_time"]).alive()
    assert Proc(rd["pid"], rd["create_time"]).alive()
    assert oct(services.state_file.stat().st_mode & 0o777) == "0o600"

    again = services.up(ephemeral=True)
    assert again["postgres"]["pid"] == pg["pid"]
    assert again["redis"]["pid"] == rd["pid"]
    assert any("already running" in line for line in services.lines)  # type: ignore[attr-defined]

    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=pg["port"], user=pg["user"], password=pg["password"], dbname="hub_eu"
    ) as conn:
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname='vector'").fetchone() == (
            "vector",
        )
        # The hub runs as a role that owns its databases but is no superuser (append-only audit tables).
        assert conn.execute(
            "SELECT current_user, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == ("hub_app", False, True)
        assert conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'hub_eu'"
        ).fetchone() == ("hub_app",)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=pg["port"], user=pg["user"], password="wrong", dbname="hub_eu")

    report = services.status()
    assert report["postgres"] == {"running": True, "port": pg["port"], "pid": pg["pid"]}

    services.down()
    assert not Proc(pg["pid"], pg["create_time"]).alive()
    assert not Proc(rd["pid"], rd["create_time"]).alive()
    assert services.status() == {"postgres": {"running": False}, "redis": {"running": False}}

    # Data survives a restart.
    state = services.up(ephemeral=True)
    assert (Path(state["postgres"]["data_dir"]) / "PG_VERSION").exists()


def test_recovers_from_crash_leftovers(services: EmbeddedServices) -> None:
    state = services.up(ephemeral=True, free_ports=True)
    data = Path(state["postgres"]["data_dir"])
    # Simulate a crash: kill both servers hard, leave services.json and postmaster.pid behind.
    for name in ("redis", "postgres"):
        psutil.Process(state[name]["pid"]).kill()
        psutil.wait_procs([psutil.Process(state[name]["pid"])], timeout=10)
    assert (data / "postmaster.pid").exists()
    services.state_file.write_text("{not json")
    state = services.up(ephemeral=True)
    assert Proc(state["postgres"]["pid"], state["postgres"]["create_time"]).alive()
    assert any("stale postmaster.pid" in line for line in services.lines)  # type: ignore[attr-defined]
    assert any("corrupt" in line for line in services.lines)  # type: ignore[attr-defined]


def test_a_configured_port_that_is_taken_says_what_to_do(
    services: EmbeddedServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        monkeypatch.setenv("HUB_PG_PORT", str(blocker.getsockname()[1]))
        with pytest.raises(ServiceError, match="HUB_PG_PORT"):
            services.up(ephemeral=True)


def test_an_unconfigured_default_port_that_is_taken_moves_to_a_free_one(services: EmbeddedServices) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        config = {
            "pg_port": taken,
            "redis_port": free_port(),
            "pg_port_fixed": False,
            "redis_port_fixed": False,
        }
        services.home.mkdir(parents=True, exist_ok=True)
        services.config_file.write_text(json.dumps(config))
        state = services.up(ephemeral=True)
    assert state["postgres"]["port"] != taken


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as a service user")
def test_as_root_the_server_runs_unprivileged_without_opening_private_dirs(
    services: EmbeddedServices,
) -> None:
    mode_before = services.home.parent.stat().st_mode & 0o777
    state = services.up(ephemeral=True, free_ports=True)
    assert psutil.Process(state["postgres"]["pid"]).username() == "hubsvc"
    assert services.home.parent.stat().st_mode & 0o777 == mode_before
    assert (services.home / "pgdata").is_symlink()


def test_data_left_behind_by_a_wiped_hub_home_is_moved_aside(services: EmbeddedServices) -> None:
    """A new clone at the same path must not try the old data with a new password (nor delete it)."""
    first = services.up(ephemeral=True, free_ports=True)
    data = Path(first["postgres"]["data_dir"])
    services.down()
    services.config_file.unlink()  # what deleting the checkout does; the data dir outlives it
    services.state_file.unlink(missing_ok=True)
    again = services.up(ephemeral=True, free_ports=True)
    assert Proc(again["postgres"]["pid"], again["postgres"]["create_time"]).alive()
    assert any("orphaned" in line for line in services.lines)  # type: ignore[attr-defined]
    assert list(data.parent.glob("pgdata.orphaned-*"))
