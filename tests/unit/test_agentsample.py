"""kmesh_lab.agentsample: the flat memory sample from a real `kmesh-node top` report, the
metrics parsing and the wait for the agent's service count (against a fake metrics server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kmesh_lab import agentsample
from kmesh_node import stats

SAMPLE = Path(__file__).parent / "data" / "stats_kernel_sample.json"


def kernel_report() -> dict[str, Any]:
    """`kmesh-node top --json` built from a sample recorded on the real kernel: one program
    referencing an array-of-maps (2 inner arrays), a hash-of-maps (1 inner hash), a hash."""
    raw = json.loads(SAMPLE.read_text())
    before = {int(k): tuple(v) for k, v in raw["before"].items()}
    after = {int(k): tuple(v) for k, v in raw["after"].items()}
    meta = {"timestamp": 1.0, "interval": 0.3, "bpffs": "/sys/fs/bpf/x", "stats_method": "fd"}
    return stats.build_report(raw["inventory"], before, after, raw["wall_ns"], 2, meta)


def test_bpf_memory_counts_inner_maps_the_gadget_view_cannot_see() -> None:
    report = kernel_report()
    mem = agentsample.bpf_memory(report)
    maps = report["maps"]
    inner = [m for m in maps if m["inner_of"] is not None]
    assert mem["bpf_maps_bytes"] == sum(m["memlock_bytes"] for m in maps)
    assert mem["bpf_inner_maps_bytes"] == sum(m["memlock_bytes"] for m in inner) > 0
    assert mem["bpf_bytes"] == mem["bpf_maps_bytes"] + mem["bpf_programs_bytes"]
    assert mem["bpf_maps"] == 6 and mem["bpf_inner_maps"] == 3
    # the one program references the two outer maps and the hash, never the inner maps
    assert mem["gadget_distinct_bytes"] == mem["bpf_maps_bytes"] - mem["bpf_inner_maps_bytes"]
    assert mem["gadget_invisible_bytes"] == mem["bpf_inner_maps_bytes"]
    assert mem["gadget_sum_bytes"] == mem["gadget_distinct_bytes"]  # one program: no repeats
    assert [p["map_count"] for p in mem["gadget_programs"]] == [3]
    # grouped by name like seed 002's `bpftool map -j | jq group_by(.name)`
    groups = mem["maps_by_name"]
    assert groups["outer.inner"]["maps"] == 2 and groups["houter.inner"]["maps"] == 1
    assert sum(g["memlock_bytes"] for g in groups.values()) == mem["bpf_maps_bytes"]
    assert mem["bpf_entries"] == sum(g["entries"] for g in groups.values())
    assert mem["bpf_window_s"] == 0.3
    assert all(v >= 0 for v in mem.values() if isinstance(v, int | float))


def test_bpf_memory_rejects_something_else() -> None:
    with pytest.raises(agentsample.AgentError, match="not a `kmesh-node top --json` report"):
        agentsample.bpf_memory({"programs": []})


def test_parse_metrics_keeps_label_less_samples() -> None:
    text = (
        "# HELP kmesh_node_services Services\n# TYPE kmesh_node_services gauge\n"
        "kmesh_node_services 100.0\n"
        'kmesh_node_map_bytes{map="fe4"} 4096.0\n'
        "kmesh_node_map_resizes_total 3.0\n"
    )
    assert agentsample.parse_metrics(text) == {
        "kmesh_node_services": 100.0,
        "kmesh_node_map_resizes_total": 3.0,
    }


class FakeMetrics:
    """An agent's metrics endpoint whose service count the test sets."""

    def __init__(self) -> None:
        self.services = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"kmesh_node_services {fake.services}.0\n".encode()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metrics() -> Iterator[FakeMetrics]:
    fake = FakeMetrics()
    yield fake
    fake.close()


def test_wait_services_returns_once_the_count_is_reached(
    metrics: FakeMetrics, tmp_path: Path
) -> None:
    agent = agentsample.Agent("/sys/fs/bpf/x", metrics.address, tmp_path / "pid")
    metrics.services = 7
    assert agentsample.services(agent) == 7
    threading.Timer(0.3, lambda: setattr(metrics, "services", 9)).start()
    waited = agentsample.wait_services(agent, 9, timeout=5)
    assert 0.2 <= waited < 5


def test_wait_services_names_the_count_it_saw(metrics: FakeMetrics, tmp_path: Path) -> None:
    agent = agentsample.Agent("/sys/fs/bpf/x", metrics.address, tmp_path / "pid")
    metrics.services = 3
    with pytest.raises(agentsample.AgentError, match="holds 3 services, not 4"):
        agentsample.wait_services(agent, 4, timeout=0.3)


def test_scrape_of_no_agent_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(agentsample.AgentError, match=r"playbooks/agent\.yml"):
        agentsample.scrape("127.0.0.1:9", timeout=1)
