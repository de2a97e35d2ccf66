"""`manage.py serve`: what `make run` runs. Services, migrations, simulators, demo, then web + worker + beat.

Ctrl-C (or SIGTERM) stops every process this command started, and the embedded services if it started them.
Data is kept in HUB_HOME, so running it again continues where it stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.core.embedded import EmbeddedServices


def worker_queues() -> list[str]:
    """Every queue a task is routed to, and the default one: the local worker must consume them all."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *routed})


def process_commands(*, port: int) -> dict[str, list[str]]:
    """The web server, one Celery worker for every queue, and beat."""
    bin_dir = os.path.dirname(sys.executable)
    return {
        "web": [
            os.path.join(bin_dir, "gunicorn"),
            "hub.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "3",
            "--threads",
            "32",  # gthread workers behind the admission gate, as deploy/gunicorn.conf.py explains
            "--access-logfile",
            "-",
            "--config",
            "python:hub.gunicorn",
        ],
        "worker": [
            os.path.join(bin_dir, "celery"),
            "-A",
            "celery_worker",
            "worker",
            "-Q",
            ",".join(worker_queues()),
            "-l",
            "info",
            "--concurrency",
            "2",
        ],
        "beat": [
            os.path.join(bin_dir, "celery"),
            "-A",
            "celery_worker",
            "beat",
            "-l",
            "info",
            "-s",
            str(settings.HUB_HOME / "celerybeat-schedule"),
        ],
    }


class Command(BaseCommand):
    help = "Run the hub locally: embedded services, migrate, seed demo, gunicorn, Celery worker and beat."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-seed", action="store_true", help="Skip seed_demo.")

    def handle(self, *args: Any, **options: Any) -> None:
        services = EmbeddedServices(settings.HUB_HOME, settings.HUB_REGIONS, log=self.stdout.write)
        embedded = not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
        started_services = embedded and not all(s["running"] for s in services.status().values())
        if embedded:
            services.up()
        # Settings were read before the services had their ports: run the rest in a fresh interpreter.
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        subprocess.run([*manage, "migrate", "-v", "0"], check=True)
        # gunicorn serves static files through WhiteNoise from STATIC_ROOT, as in production.
        subprocess.run([*manage, "collectstatic", "--noinput", "-v", "0"], check=True)
        # The vendor simulators, before seed_demo points the demo connections at them.
        subprocess.run([*manage, "simulators", "up"], check=True)
        if not options["no_seed"]:
            subprocess.run([*manage, "seed_demo"], check=True)
        port = options["port"]
        commands = process_commands(port=port)
        # Every process writes its metrics to one directory that /metrics merges; start it empty.
        metrics_dir = settings.HUB_METRICS_DIR
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.makedirs(metrics_dir, mode=0o700, exist_ok=True)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        procs = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, env=env, start_new_session=True)
            for name, cmd in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(f"\nConsole: http://127.0.0.1:{port}/   (Ctrl-C stops everything)\n")
        )
        stop = {"now": False}

        def _stop(signum: int, frame: Any) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop["now"]:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with code {proc.returncode}; stopping everything")
                        stop["now"] = True
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            subprocess.run([*manage, "simulators", "down"], check=False)
            if started_services:
                services.down()
            self.stdout.write("stopped")
