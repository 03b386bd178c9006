"""kmesh_lab.latencycompare: planes compared within each repetition only; figures left out
when a plane lacks that repetition; records replaced, never duplicated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kmesh_lab import latencycompare, results


def conn_rec(plane: str, p90s: list[float], c: int = 128, keepalive: bool = True) -> dict:
    return {
        "scenario": f"conn.{plane}.c={c}.{'keepalive' if keepalive else 'new_connection'}",
        "params": {"data_plane": plane, "connections": c, "keepalive": keepalive, "qps": 0},
        "samples": [
            {"repetition": i + 1, "p90_ms": v, "p99_ms": 2 * v} for i, v in enumerate(p90s)
        ],
    }


def cpu_rec(plane: str, p90: float, cpu: float, qps: float = 998.0) -> dict:
    return {
        "scenario": f"cpu.{plane}.qps=1000",
        "params": {"data_plane": plane, "qps": 1000, "client_connections": 16},
        "samples": [
            {
                "repetition": 1,
                "p90_ms": p90,
                "p99_ms": p90,
                "total_cpu_pct_node": cpu,
                "qps": qps,
            }
        ],
    }


def by_scenario(out: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["scenario"]: c for c in out}


def test_reduction_and_ratios_per_repetition() -> None:
    recs = [
        conn_rec("sidecar", [10.0, 8.0]),
        conn_rec("kmesh_node", [4.0, 6.0]),
        conn_rec("kube_proxy_iptables_nft", [4.0, 3.0]),
        conn_rec("pod_ip", [2.0, 2.0]),
    ]
    out = by_scenario(latencycompare.compare(recs))
    comp = out["compare.c=128.keepalive"]
    s1, s2 = comp["samples"]
    assert s1["repetition"] == 1 and s2["repetition"] == 2
    assert s1["p90_reduction_vs_sidecar_pct"] == pytest.approx(60.0)
    assert s2["p90_reduction_vs_sidecar_pct"] == pytest.approx(25.0)
    assert s1["p90_ratio_kmesh_to_kube_proxy"] == pytest.approx(1.0)
    assert s2["p90_ratio_kmesh_to_kube_proxy"] == pytest.approx(2.0)
    assert s1["sidecar_added_p90_ms"] == pytest.approx(8.0)
    assert s1["sidecar_added_p99_ms"] == pytest.approx(16.0)
    assert s1["kmesh_added_p90_ms"] == pytest.approx(2.0)
    assert comp["params"]["at_connections"] == 128 and comp["params"]["keepalive"] is True
    assert "connections" not in comp["params"]  # not a point of the latency plot
    assert "data_plane" not in comp["params"]
    assert "latency.claims" in comp["experiments"]


def test_a_plane_missing_in_a_repetition_leaves_its_figures_out() -> None:
    recs = [conn_rec("sidecar", [10.0, 8.0]), conn_rec("kmesh_node", [4.0])]
    (comp,) = latencycompare.compare(recs)
    assert [s["repetition"] for s in comp["samples"]] == [1]
    assert latencycompare.compare([conn_rec("sidecar", [1.0])]) == []


def test_cpu_points_compare_cpu_and_istio_added_latency() -> None:
    recs = [
        cpu_rec("sidecar", 1.5, 20.0),
        cpu_rec("kmesh_node", 0.6, 5.0),
        cpu_rec("kube_proxy_iptables_nft", 0.5, 4.0),
        cpu_rec("pod_ip", 0.5, 4.0),
    ]
    (comp,) = latencycompare.compare(recs)
    (s,) = comp["samples"]
    assert comp["scenario"] == "compare.qps=1000"
    assert s["cpu_ratio_kmesh_to_kube_proxy"] == pytest.approx(1.25)
    assert s["cpu_reduction_vs_sidecar_pct"] == pytest.approx(75.0)
    assert s["sidecar_added_p90_ms"] == pytest.approx(1.0)
    assert "latency.istio_benchmark" in comp["experiments"]


def test_cpu_is_not_compared_where_a_plane_missed_the_rate() -> None:
    recs = [cpu_rec("sidecar", 1.5, 20.0, qps=640.0), cpu_rec("kmesh_node", 0.6, 5.0)]
    (comp,) = latencycompare.compare(recs)
    (s,) = comp["samples"]
    assert "cpu_reduction_vs_sidecar_pct" not in s
    assert s["p90_reduction_vs_sidecar_pct"] == pytest.approx(60.0)


def test_variants_are_kept_apart() -> None:
    recs = [
        conn_rec("sidecar", [10.0], keepalive=False),
        conn_rec("kmesh_node", [5.0], keepalive=False),
        conn_rec("sidecar", [2.0]),
        conn_rec("kmesh_node", [1.5]),
    ]
    out = by_scenario(latencycompare.compare(recs))
    assert out["compare.c=128.new_connection"]["samples"][0][
        "p90_reduction_vs_sidecar_pct"
    ] == pytest.approx(50.0)
    assert out["compare.c=128.keepalive"]["samples"][0][
        "p90_reduction_vs_sidecar_pct"
    ] == pytest.approx(25.0)


def test_write_replaces_its_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "environment", lambda: {"hostname": "test"})
    for rec in (conn_rec("sidecar", [10.0]), conn_rec("kmesh_node", [4.0])):
        full = results.make_record(
            "suite_latency", rec["scenario"], rec["params"], rec["samples"], env={}
        )
        results.write_records(tmp_path, "suite_latency", [full])
    assert latencycompare.write(tmp_path, "suite_latency", None) == ["compare.c=128.keepalive"]
    latencycompare.write(tmp_path, "suite_latency", None)
    names = [r["scenario"] for r in results.read_records(tmp_path, "suite_latency")]
    assert names.count("compare.c=128.keepalive") == 1
    assert len(names) == 3
