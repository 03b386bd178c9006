"""Prometheus metrics of the agent (`kmesh_node_*`), served on `--metrics HOST:PORT`.

Two kinds: what the agent pushes (reconcile latency histogram, rejected objects by reason)
and what is read on each scrape -- the agent's own state (services, endpoints, frontends,
resizes, connects with no endpoint) and, from the kernel, per-map bytes/entries and
per-program cumulative run time/count (the same inventory as `kmesh-node top`, without its
sampling window). Scrape-time reading means the figures are never staler than the scrape.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kmesh_node import stats

log = logging.getLogger(__name__)

PREFIX = "kmesh_node"
# state() keys that only ever grow: exposed as counters (name -> help); the rest are gauges
STATE_COUNTERS = {
    "resizes": ("map_resizes", "Elastic map resizes (inner map swapped for another size)"),
    "no_endpoint": (
        "no_endpoint_connects",
        "Connections to a service with no ready endpoint, left untouched",
    ),
    "accel_redirect": (
        "accel_redirected_messages",
        "sendmsg() calls the sk_msg program handed straight to the same-node peer socket",
    ),
    "accel_pass": (
        "accel_passed_messages",
        "sendmsg() calls of accelerated sockets whose peer is not in the sockhash (normal path)",
    ),
}
STATE_HELP = {
    "services": "Services the datapath holds",
    "endpoints": "Endpoints (ready backends) the datapath holds",
    "frontends": "Frontends (ClusterIP:port/proto) the datapath rewrites",
    "capacity": "Capacity of the elastic maps (sum of inner map max_entries)",
}
RECONCILE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def parse_listen(listen: str) -> tuple[str, int]:
    """ "HOST:PORT" or "[V6]:PORT" -> (host, port)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)", listen)
    if not m:
        raise RuntimeError(
            f"--metrics {listen!r} is not HOST:PORT; e.g. 127.0.0.1:15020 or [::1]:15020"
        )
    host = m.group(1) or m.group(3) or "0.0.0.0"
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise RuntimeError(f"--metrics port {port} is out of range; use 0..65535")
    return host, port


# reason text -> a small fixed set of label values, first match wins. Reasons carry the bad
# value itself ("port 70000 is not..."), so the raw text would make one series per value.
REASON_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("duplicate", ("twice", "duplicate", "already served", "also defined")),
    ("too_many_endpoints", ("endpoints in one slice", "endpoints; the datapath")),
    ("bad_yaml", ("not valid yaml", "cannot read")),
    ("wrong_kind", ("kind", "apiversion", "expected a mapping")),
    ("bad_port", ("port",)),
    ("bad_ip", ("ip address", "clusterip", "address", "ipv4", "ipv6")),
    ("bad_metadata", ("metadata", "name")),
)
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,47}")


def reason_label(reason: str) -> str:
    """A bounded label for a rejection reason: a caller's own short category
    ("bad_port") is kept; free text is classified (REASON_CLASSES), else "invalid"."""
    if _CATEGORY.fullmatch(reason):
        return reason
    text = reason.lower()
    for label, needles in REASON_CLASSES:
        if any(n in text for n in needles):
            return label
    return "invalid"


def object_label(obj: dict[str, Any], bpffs: str) -> str:
    """The pin path under bpffs when pinned (stable, readable), else name#id."""
    if obj.get("pins"):
        return os.path.relpath(obj["pins"][0], bpffs)
    return f"{obj['name']}#{obj['id']}"


class AgentCollector(Collector):
    """Reads the agent's state and the kernel's figures at scrape time."""

    def __init__(self, bpffs: str, state: Callable[[], dict[str, int]]) -> None:
        self.bpffs = bpffs
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._state_metrics()
        yield from self._kernel_metrics()

    def _state_metrics(self) -> Iterator[Metric]:
        try:
            values = self.state()
        except Exception:  # a failing state() must not break the scrape of everything else
            log.exception("metrics: agent state() failed")
            return
        for key, value in sorted(values.items()):
            if key in STATE_COUNTERS:
                name, doc = STATE_COUNTERS[key]
                yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
            else:
                doc = STATE_HELP.get(key, f"Agent state: {key}")
                yield GaugeMetricFamily(f"{PREFIX}_{key}", doc, value=value)

    def _kernel_metrics(self) -> Iterator[Metric]:
        try:
            snap = stats.snapshot(self.bpffs)
        except (RuntimeError, OSError) as exc:
            # not pinned yet (agent starting) or already uninstalled: nothing to report
            log.debug("metrics: no kernel figures from %s: %s", self.bpffs, exc)
            return
        bytes_ = GaugeMetricFamily(
            f"{PREFIX}_map_bytes", "Map memory (memlock), inner maps included", labels=["map"]
        )
        entries = GaugeMetricFamily(f"{PREFIX}_map_entries", "Map entries", labels=["map"])
        for m in snap["maps"]:
            label = object_label(m, self.bpffs)
            bytes_.add_metric([label], m["memlock_bytes"])
            if m["entries"] is not None:
                entries.add_metric([label], m["entries"])
        run_time = CounterMetricFamily(
            f"{PREFIX}_program_run_time_seconds",
            "Cumulative BPF run time (counts only while kernel run stats are on)",
            labels=["program"],
        )
        runs = CounterMetricFamily(
            f"{PREFIX}_program_runs", "Cumulative BPF program runs", labels=["program"]
        )
        for p in snap["programs"]:
            label = object_label(p, self.bpffs)
            run_time.add_metric([label], p["run_time_ns"] / 1e9)
            runs.add_metric([label], p["run_cnt"])
        total = snap["totals"]
        yield bytes_
        yield entries
        yield run_time
        yield runs
        yield GaugeMetricFamily(
            f"{PREFIX}_bpf_memory_bytes",
            "All map and program memory reachable from the pins",
            value=total["bytes"],
        )
        try:
            with open(stats.SYSCTL) as f:
                enabled = float(f.read().strip() == "1")
        except OSError:
            enabled = 0.0
        yield GaugeMetricFamily(
            f"{PREFIX}_bpf_stats_enabled", "1 while kernel BPF run-time stats are on", enabled
        )


class Metrics:
    """The agent's metrics: `start(listen)`, then `observe_reconcile()` and `rejected()`."""

    def __init__(
        self,
        bpffs: str,
        state: Callable[[], dict[str, int]],
        registry: CollectorRegistry | None = None,
    ) -> None:
        # a registry of our own: no process/platform collectors from the global default,
        # and several agents (tests) can live in one process
        self.registry = registry or CollectorRegistry()
        self._reconcile = Histogram(
            f"{PREFIX}_reconcile_seconds",
            "Time to apply one change (or a full sync) to the kernel maps",
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self._rejected = Counter(
            f"{PREFIX}_rejected_objects",
            "Objects refused by the translator, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(AgentCollector(bpffs, state))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    def start(self, listen: str) -> None:
        """Serve Prometheus text on HOST:PORT in a daemon thread (port 0 = any free port)."""
        host, port = parse_listen(listen)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise RuntimeError(
                f"cannot serve metrics on {listen}: {exc.strerror}; pick a free port with "
                "--metrics HOST:PORT"
            ) from exc
        self.address = (host, self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def observe_reconcile(self, seconds: float) -> None:
        self._reconcile.observe(seconds)

    def rejected(self, reason: str) -> None:
        """Count one refused object under a bounded reason label (see reason_label), so a
        flood of bad objects cannot blow up the number of series."""
        self._rejected.labels(reason=reason_label(reason)).inc()
