"""kmesh_node_* metrics: agent state, pushed figures, and kernel figures (from a recorded
sample, so no root is needed); the HTTP endpoint on an ephemeral loopback port."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kmesh_node import metrics, stats

SAMPLE = Path(__file__).parent / "data" / "stats_kernel_sample.json"
STATE = {"services": 3, "endpoints": 9, "frontends": 4, "resizes": 2, "no_endpoint": 5}


def samples(m: metrics.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def fake_snapshot(bpffs: str, count_entries: bool = True) -> dict[str, Any]:
    inv = json.loads(SAMPLE.read_text())["inventory"]
    pin_dir = inv["maps"][0]["pins"][0].rsplit("/maps/", 1)[0] if inv["maps"][0]["pins"] else ""
    assert pin_dir  # the sample's first map is pinned
    inv["totals"] = stats.totals(inv["programs"], inv["maps"])
    inv["_dir"] = pin_dir
    return inv


def test_state_and_pushed_metrics_without_kernel(tmp_path: Path) -> None:
    m = metrics.Metrics(str(tmp_path / "not-pinned"), lambda: STATE)
    m.observe_reconcile(0.003)
    m.observe_reconcile(0.2)
    m.rejected("bad_port")
    m.rejected("bad_port")
    m.rejected("Duplicate ClusterIP: 10.0.0.1 already used by ns/a")
    s = samples(m)
    assert s[("kmesh_node_services", ())] == 3
    assert s[("kmesh_node_endpoints", ())] == 9
    assert s[("kmesh_node_frontends", ())] == 4
    assert s[("kmesh_node_map_resizes_total", ())] == 2
    assert s[("kmesh_node_no_endpoint_connects_total", ())] == 5
    assert s[("kmesh_node_reconcile_seconds_count", ())] == 2
    assert s[("kmesh_node_reconcile_seconds_bucket", (("le", "0.005"),))] == 1
    assert s[("kmesh_node_reconcile_seconds_sum", ())] == pytest.approx(0.203)
    assert s[("kmesh_node_rejected_objects_total", (("reason", "bad_port"),))] == 2
    assert s[("kmesh_node_rejected_objects_total", (("reason", "duplicate"),))] == 1
    # no pins: no kernel series, and the scrape still works
    assert not any(name.startswith("kmesh_node_map_bytes") for name, _ in s)


def test_kernel_metrics_from_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = fake_snapshot("")
    monkeypatch.setattr(stats, "snapshot", lambda bpffs, count_entries=True: snap)
    m = metrics.Metrics(snap["_dir"], lambda: STATE)
    s = samples(m)
    by_name = {mp["name"]: mp for mp in snap["maps"]}
    assert (
        s[("kmesh_node_map_bytes", (("map", "maps/outer"),))] == by_name["outer"]["memlock_bytes"]
    )
    assert s[("kmesh_node_map_entries", (("map", "maps/outer"),))] == 2
    inner = by_name["inner_h"]  # not pinned: named by kernel name and id
    assert (
        s[("kmesh_node_map_bytes", (("map", f"inner_h#{inner['id']}"),))] == inner["memlock_bytes"]
    )
    (prog,) = snap["programs"]
    assert s[("kmesh_node_program_runs_total", (("program", "prog"),))] == prog["run_cnt"]
    assert s[
        ("kmesh_node_program_run_time_seconds_total", (("program", "prog"),))
    ] == pytest.approx(prog["run_time_ns"] / 1e9)
    assert s[("kmesh_node_bpf_memory_bytes", ())] == snap["totals"]["bytes"]


def test_failing_state_does_not_break_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> dict[str, int]:
        raise ValueError("boom")

    m = metrics.Metrics("/nonexistent", broken)
    m.rejected("bad_ip")
    assert samples(m)[("kmesh_node_rejected_objects_total", (("reason", "bad_ip"),))] == 1


def test_http_endpoint_on_ephemeral_port() -> None:
    m = metrics.Metrics("/nonexistent", lambda: STATE)
    m.start("127.0.0.1:0")
    try:
        assert m.address is not None
        host, port = m.address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert "kmesh_node_services 3.0" in body
        assert "kmesh_node_reconcile_seconds_bucket" in body
    finally:
        m.stop()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:15020", ("127.0.0.1", 15020)),
        ("[::1]:9000", ("::1", 9000)),
        (":8080", ("0.0.0.0", 8080)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert metrics.parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["15020", "host", "1.2.3.4:99999"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(RuntimeError, match=r"HOST:PORT|out of range"):
        metrics.parse_listen(listen)


def test_port_in_use_says_how_to_fix() -> None:
    a = metrics.Metrics("/nonexistent", lambda: {})
    a.start("127.0.0.1:0")
    try:
        assert a.address is not None
        b = metrics.Metrics("/nonexistent", lambda: {})
        with pytest.raises(RuntimeError, match="free port"):
            b.start(f"127.0.0.1:{a.address[1]}")
    finally:
        a.stop()


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("spec.ports[0].port 70000 is not a port number; use an integer 1-65535", "bad_port"),
        ("spec.clusterIP '10.0.0.999' is not a valid IPv4/IPv6 address; fix it", "bad_ip"),
        ("unsupported kind/apiVersion 'Pod'/'v1'; only 'Service'/'v1' ...", "wrong_kind"),
        ("not valid YAML at line 3 column 1 of the document: found ...; fix", "bad_yaml"),
        ("frontend 10.0.0.1:80/TCP is already served by Service a/b; ...", "duplicate"),
        (
            "1500 endpoints in one slice; Kubernetes allows at most 1000: split",
            "too_many_endpoints",
        ),
        ("metadata.name is missing or empty; give the object a name", "bad_metadata"),
        ("something nobody foresaw", "invalid"),
        ("bad_port", "bad_port"),
    ],
)
def test_reason_labels_are_bounded(reason: str, label: str) -> None:
    assert metrics.reason_label(reason) == label
