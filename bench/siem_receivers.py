"""The three SIEM receivers of bench_siem in a process of their own (so parsing and checking on the receiving
side does not share the benchmark's interpreter lock): a syslog-over-TLS listener, a Splunk HEC and a signed
webhook receiver (tests/siem/helpers.py), on loopback.

    python bench/siem_receivers.py PKI_DIR SUMMARY.json HEC_TOKEN WEBHOOK_SECRET

Prints one JSON line with the ports, then serves until SIGTERM, when it writes per receiver: events
received, unique ids, and whether the de-duplicated stream is gap-free and in order.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.siem.helpers import HttpsReceiver, SyslogTlsListener, make_pki


def summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per tenant (the id's prefix): what arrived, and whether it is the chain in order once de-duplicated."""
    tenants: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        tenants.setdefault(str(event["id"]).rsplit("-", 1)[0], []).append(event)
    return {tenant: _one(items) for tenant, items in tenants.items()}


def _one(events: list[dict[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    unique: list[int] = []
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            unique.append(int(event["seq"]))
    ordered = all(b == a + 1 for a, b in itertools.pairwise(unique))
    return {
        "received": len(events),
        "unique": len(unique),
        "first_seq": unique[0] if unique else None,
        "last_seq": unique[-1] if unique else None,
        "in_order_without_gaps": ordered,
    }


def main() -> None:
    pki_dir, out, token, secret = sys.argv[1:5]
    pki = make_pki(Path(pki_dir))
    syslog = SyslogTlsListener(pki, light=True).start()
    hec = HttpsReceiver(pki, mode="hec", secret=token, light=True).start()
    webhook = HttpsReceiver(pki, mode="webhook", secret=secret, light=True).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    ports = {"syslog_tls": syslog.port, "splunk_hec": hec.port, "webhook": webhook.port}
    print(json.dumps(ports), flush=True)
    done.wait()
    result = {
        "syslog_tls": summary(syslog.events()),
        "splunk_hec": summary(hec.received()),
        "webhook": summary(webhook.received()),
    }
    Path(out).write_text(json.dumps(result))
    for receiver in (syslog, hec, webhook):
        receiver.stop()


if __name__ == "__main__":
    main()
