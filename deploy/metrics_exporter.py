"""Serve a Celery worker container's metrics: the multi-process registry in PROMETHEUS_MULTIPROC_DIR.

Celery's prefork children record task durations, sync records and vendor calls into per-process files; this
small process sums them and answers Prometheus on --port (deploy/entrypoint.sh starts it next to the worker).
It imports nothing from the hub, so it starts in milliseconds and cannot break on application settings.
Restrict who reaches the port with a network policy: it is only meant for Prometheus.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--addr", default="0.0.0.0")  # noqa: S104 - Prometheus scrapes the pod's IP
    args = parser.parse_args()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        sys.stderr.write("metrics_exporter: PROMETHEUS_MULTIPROC_DIR is not set\n")
        return 2
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(args.port, addr=args.addr, registry=registry)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
