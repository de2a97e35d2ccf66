"""Start, stop and describe the simulators (vendors, messaging platforms), in-process or in background.

Function API (the `simulators` management command and the tests call these):
    start_all(state_dir, *, ports=None, counts=None, seed=42, vendors=None) -> dict[vendor, description]
    stop_all(state_dir=None) -> None
    up(state_dir, *, ports=None, counts=None, timeout=60.0) -> dict[vendor, description]   # background
    down(state_dir, *, timeout=10.0) -> bool
    status(state_dir) -> {"running": bool, "pid": int | None, "simulators": {vendor: description}}
CLI: python -m connectors.simulators up|down|status [--state-dir DIR] [--json] [--count N] [--port-base P]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from connectors.simulation import Simulator

SIMULATORS: dict[str, str] = {
    "salesforce": "connectors.salesforce.simulator.SalesforceSimulator",
    "hubspot": "connectors.hubspot.simulator.HubSpotSimulator",
    "servicenow": "connectors.servicenow.simulator.ServiceNowSimulator",
    "sap": "connectors.sap.simulator.SapSimulator",
    "dynamics365": "connectors.dynamics.simulator.DynamicsSimulator",
    "sap_odata": "connectors.sap_odata.simulator.SapODataSimulator",
    "whatsapp": "connectors.whatsapp.simulator.WhatsAppSimulator",
    "twilio": "connectors.twilio.simulator.TwilioSimulator",
    "slack": "connectors.slack.simulator.SlackSimulator",
    "teams": "connectors.teams.simulator.TeamsSimulator",
    "oidc": "connectors.oidc.simulator.OidcSimulator",
    "saml": "connectors.saml.simulator.SamlIdpSimulator",
}
STATE_FILE = "simulators.json"
PID_FILE = "simulators.pid"
LOG_FILE = "simulators.log"

_running: dict[Path, dict[str, Simulator]] = {}  # in-process simulators, keyed by their state dir
_lock = threading.Lock()


def default_state_dir() -> Path:
    if os.environ.get("HUB_SIMULATORS_DIR"):
        return Path(os.environ["HUB_SIMULATORS_DIR"])
    return Path(os.environ.get("HUB_HOME", ".hub")) / "simulators"


def simulator_class(vendor: str) -> type[Simulator]:
    module, _, name = SIMULATORS[vendor].rpartition(".")
    cls = getattr(import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Simulator)):
        raise TypeError(f"{SIMULATORS[vendor]} is not a Simulator")
    return cls


def start_all(
    state_dir: str | Path,
    *,
    ports: Mapping[str, int] | None = None,
    counts: Mapping[str, int] | None = None,
    seed: int = 42,
    vendors: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Start the simulators in this process (port 0 = any free port); return their descriptions."""
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    started: dict[str, Simulator] = {}
    try:
        for vendor in vendors or list(SIMULATORS):
            port = (ports or {}).get(vendor, 0)
            started[vendor] = simulator_class(vendor)(
                state_dir=state, port=port, seed=seed, counts=counts
            ).start()
    except BaseException:
        for sim in started.values():
            sim.stop()
        raise
    with _lock:
        _running.setdefault(state, {}).update(started)
    return {vendor: sim.describe() for vendor, sim in started.items()}


def running(state_dir: str | Path) -> dict[str, Simulator]:
    """Return the in-process simulators started for `state_dir` (for fault injection from Python)."""
    return dict(_running.get(Path(state_dir).resolve(), {}))


def stop_all(state_dir: str | Path | None = None) -> None:
    """Stop in-process simulators for `state_dir`, or all of them."""
    with _lock:
        keys = [Path(state_dir).resolve()] if state_dir is not None else list(_running)
        groups = [_running.pop(k, {}) for k in keys]
    for group in groups:
        for sim in group.values():
            sim.stop()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(state_dir: str | Path) -> dict[str, Any]:
    state = Path(state_dir)
    pid_path, state_path = state / PID_FILE, state / STATE_FILE
    pid = int(pid_path.read_text()) if pid_path.exists() else None
    alive = pid is not None and _pid_alive(pid)
    sims = json.loads(state_path.read_text()) if alive and state_path.exists() else {}
    return {"running": alive and bool(sims), "pid": pid if alive else None, "simulators": sims}


def up(
    state_dir: str | Path,
    *,
    ports: Mapping[str, int] | None = None,
    counts: Mapping[str, int] | None = None,
    timeout: float = 60.0,
) -> dict[str, dict[str, Any]]:
    """Run all simulators in one detached background process; idempotent when already running."""
    state = Path(state_dir).resolve()
    current = status(state)
    if current["running"]:
        return dict(current["simulators"])
    state.mkdir(parents=True, exist_ok=True)
    (state / STATE_FILE).unlink(missing_ok=True)
    argv = [sys.executable, "-m", "connectors.simulators", "serve", "--state-dir", str(state)]
    if ports:
        argv += ["--ports", json.dumps(dict(ports))]
    if counts:
        argv += ["--counts", json.dumps(dict(counts))]
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    log = os.open(state / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # posix_spawn, not Popen: the child outlives this process and needs no Popen object to reap it.
        pid = os.posix_spawn(
            sys.executable,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log)
    (state / PID_FILE).write_text(str(pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                raise RuntimeError(f"simulators exited with status {code}; see {state / LOG_FILE}")
        if (state / STATE_FILE).exists():
            return dict(json.loads((state / STATE_FILE).read_text()))
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    raise TimeoutError(f"simulators did not start within {timeout:.0f} s; see {state / LOG_FILE}")


def down(state_dir: str | Path, *, timeout: float = 10.0) -> bool:
    """Stop the background process; return False when none was running."""
    state = Path(state_dir)
    pid_path = state / PID_FILE
    pid = int(pid_path.read_text()) if pid_path.exists() else None
    was_running = pid is not None and _pid_alive(pid)
    if pid is not None and was_running:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    pid_path.unlink(missing_ok=True)
    (state / STATE_FILE).unlink(missing_ok=True)
    return was_running


def serve(state_dir: Path, *, ports: Mapping[str, int] | None, counts: Mapping[str, int] | None) -> None:
    """Foreground body of the background process: start, publish descriptions, wait for SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    descriptions = start_all(state_dir, ports=ports, counts=counts)
    _write_json(state_dir / STATE_FILE, descriptions)
    stop.wait()
    stop_all(state_dir)
    (state_dir / STATE_FILE).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connectors.simulators")
    parser.add_argument("command", choices=("up", "down", "status", "serve"))
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    parser.add_argument("--json", action="store_true", help="print machine-readable output")
    parser.add_argument("--count", type=int, help="records per main object (default 10,000)")
    parser.add_argument("--counts", type=json.loads, help=argparse.SUPPRESS)
    parser.add_argument("--ports", type=json.loads, help='e.g. {"salesforce": 8443}')
    parser.add_argument("--port-base", type=int, help="P, P+1, ... in SIMULATORS order")
    args = parser.parse_args(argv)
    ports = args.ports or (
        {v: args.port_base + i for i, v in enumerate(SIMULATORS)} if args.port_base else None
    )
    counts = args.counts or (
        dict.fromkeys(("contacts", "accounts", "tickets", "orders"), args.count) if args.count else None
    )
    if args.command == "serve":
        serve(args.state_dir.resolve(), ports=ports, counts=counts)
        return 0
    if args.command == "up":
        result: Any = {"running": True, "simulators": up(args.state_dir, ports=ports, counts=counts)}
    elif args.command == "down":
        result = {"running": False, "stopped": down(args.state_dir)}
    else:
        result = status(args.state_dir)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    elif args.command == "down":
        sys.stdout.write("simulators stopped\n" if result["stopped"] else "simulators were not running\n")
    else:
        state = "running" if result["running"] else "stopped"
        lines = [f"simulators {state}"] + [
            f"  {v:<11} {d['base_url']}" for v, d in result["simulators"].items()
        ]
        sys.stdout.write("\n".join(lines) + "\n")
    return 0 if args.command != "status" or result["running"] else 3


if __name__ == "__main__":
    sys.exit(main())
