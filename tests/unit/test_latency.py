"""kmesh_lab.latency: the CPU split (apps, proxies, eBPF), proxy PIDs, the load's command
line, what a record says about its data plane, and resume (no root, no lab)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from kmesh_lab import latency, latencyplan, results

GROUPS = {
    "client-0": ("client", "kmlat/client-0"),
    "server-0": ("server", "kmlat/server-0"),
    "server-1": ("server", "kmlat/server-1"),
}


def snap(t: float, usec: tuple[int, int, int], procs: dict[int, float]) -> latency.Snapshot:
    return latency.Snapshot(t, dict(zip(GROUPS, usec, strict=True)), procs)


def test_cpu_split_subtracts_proxies_inside_the_pods() -> None:
    a = snap(10.0, (0, 0, 0), {100: 1.0, 200: 5.0})
    # 2 s: client 1.0 s CPU, servers 0.4 + 0.2 s; proxy 100 (in client-0) 0.3 s, proxy 200
    # (outside every pod cgroup) 0.1 s
    b = snap(12.0, (1_000_000, 400_000, 200_000), {100: 1.3, 200: 5.1})
    out = latency.cpu_figures(a, b, GROUPS, {100: "kmlat/client-0", 200: "system.slice"}, 2)
    assert out["client_cpu_pct_core"] == pytest.approx(50.0)
    assert out["server_cpu_pct_core"] == pytest.approx(30.0)
    assert out["proxy_cpu_pct_core"] == pytest.approx(20.0)
    assert out["app_cpu_pct_core"] == pytest.approx(80.0 - 15.0)
    assert out["total_cpu_pct_core"] == pytest.approx(65.0 + 20.0)
    assert out["total_cpu_pct_node"] == pytest.approx(42.5)
    assert out["cpu_window_s"] == pytest.approx(2.0)


def test_busiest_sidecar_and_its_memory() -> None:
    a = latency.Snapshot(0.0, dict.fromkeys(GROUPS, 0), {1: 0.0, 2: 0.0, 3: 0.0})
    b = latency.Snapshot(
        1.0,
        dict.fromkeys(GROUPS, 900_000),
        {1: 0.1, 2: 0.2, 3: 0.25},
        {1: 10 * 2**20, 2: 20 * 2**20, 3: 5 * 2**20},
    )
    pods = {1: "client-0", 2: "client-0", 3: "server-0"}  # master + worker, one worker
    out = latency.cpu_figures(a, b, GROUPS, {}, 2, pods)
    assert out["proxy_cpu_pct_core"] == pytest.approx(55.0)
    assert out["proxy_cpu_max_pct_core"] == pytest.approx(30.0)
    assert out["proxy_rss_max_bytes"] == 30 * 2**20
    assert out["proxy_rss_bytes"] == 35 * 2**20
    sidecar = {"pids": {"client-0": [1, 2], "server-0": [3]}}
    assert latency.proxy_pods(sidecar) == pods
    assert latency.proxy_pods({"pids": [1, 2]}) == {}


def test_cpu_split_ignores_a_proxy_that_appeared_or_went() -> None:
    a = snap(0.0, (0, 0, 0), {100: 1.0})
    b = snap(1.0, (100_000, 0, 0), {300: 9.0})
    out = latency.cpu_figures(a, b, GROUPS, {}, 1)
    assert out["proxy_cpu_pct_core"] == 0.0
    assert out["app_cpu_pct_core"] == pytest.approx(10.0)


def test_cpu_window_must_advance() -> None:
    a = snap(5.0, (0, 0, 0), {})
    with pytest.raises(latency.SuiteError, match="clock"):
        latency.cpu_figures(a, a, GROUPS, {}, 2)


def test_proxy_pids_from_a_list_or_per_pod() -> None:
    assert latency.proxy_pids({"pids": {"client-0": [5, 6], "server-0": [7]}}) == [5, 6, 7]
    assert latency.proxy_pids({"pids": [3, 3, 1]}) == [1, 3]
    assert latency.proxy_pids({}) == []


def test_fortio_argv_per_kind() -> None:
    (block,) = latencyplan.plan(["pod_ip"], 1, [], [128], [1000], 16, 2, 3)
    conn, cpu = block["measurements"]
    argv = latency.fortio_argv("client-0", conn, "http://10.0.0.1:80/", Path("/tmp/x.json"))
    assert argv[1:4] == ["client-0", "--", str(latency.FORTIO)]
    assert argv[argv.index("-c") + 1] == "128"
    assert "-keepalive=false" in argv and argv[argv.index("-qps") + 1] == "0"
    assert argv[-1] == "http://10.0.0.1:80/"
    argv = latency.fortio_argv("client-0", cpu, "http://10.0.0.1:80/", Path("/tmp/y.json"))
    assert argv[argv.index("-c") + 1] == "16" and argv[argv.index("-qps") + 1] == "1000"
    assert argv[argv.index("-t") + 1] == "3s" and "-keepalive=false" not in argv


def plane_state(plane: str) -> dict[str, Any]:
    return {
        "acceleration": plane == "kmesh_node_accel",
        "proxy": {"name": "HAProxy", "version": "2.6.12"} if plane == "sidecar" else None,
        "kube_proxy": {"rules_in_kernel": 25, "counts": {}, "legacy_tables_left": []},
        "kube_proxy_rules": {"kube_nat_rules": 25},
        "agent": {"running": True},
        "sidecar": {"running": plane == "sidecar"},
    }


def test_params_and_environment_say_what_was_loaded() -> None:
    p = latency.plane_params("sidecar", plane_state("sidecar"))
    assert p == {
        "acceleration": False,
        "kube_proxy": None,
        "proxy": "HAProxy",
        "target": "service_vip",
    }
    p = latency.plane_params("kube_proxy_iptables_nft", plane_state("kube_proxy_iptables_nft"))
    assert p["kube_proxy"] == "iptables/nft" and p["proxy"] is None
    assert latency.plane_params("pod_ip", plane_state("pod_ip"))["target"] == "pod_ip"
    assert latency.plane_params("kmesh_node_accel", plane_state("kmesh_node_accel"))["acceleration"]
    env = latency.plane_environment("kube_proxy_nftables", plane_state("kube_proxy_nftables"))
    assert env["kube_proxy_rules"] == {"kube_nat_rules": 25}
    env = latency.plane_environment("kmesh_node", plane_state("kmesh_node"))
    assert "rules removed" in env["kube_proxy"] and "kube_proxy_rules" not in env


def record_args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(
        run_dir=tmp_path, suite="suite_latency", repetitions=2, lab='{"profile": "quick"}'
    )


def test_record_then_append_and_resume_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(latency, "host_environment", lambda: {"hostname": "test"})
    (block,) = latencyplan.plan(["kmesh_node"], 1, [16], [], [])
    m = block["measurements"][0]
    args = record_args(tmp_path)
    params = {**m["params"], "acceleration": False}
    env_plane = {"name": "kmesh_node", "acceleration": False}
    assert latency.samples_recorded(tmp_path, "suite_latency", m["scenario"]) == 0
    sample = {"p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "qps": 10.0, "repetition": 1}
    latency.record(args, m, params, sample, env_plane)
    latency.record(args, m, params, {**sample, "p50_ms": 1.5, "repetition": 2}, env_plane)
    (rec,) = results.read_records(tmp_path, "suite_latency")
    assert latency.samples_recorded(tmp_path, "suite_latency", m["scenario"]) == 2
    assert rec["environment"]["data_plane"] == env_plane
    assert rec["environment"]["lab"] == {"profile": "quick"}
    assert rec["summary"]["p50_ms"]["median"] == pytest.approx(1.25)
    assert rec["expected_samples"] == 2
    assert rec["published"]  # seed 004's figures of latency.connections, from published.yml
    assert results.done_scenarios(tmp_path, "suite_latency") == {m["scenario"]}


def test_block_with_nothing_left_does_not_touch_the_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setattr(latency, "samples_recorded", lambda *_: 5)

    def no_switch(*_a: Any) -> Any:
        raise AssertionError("a complete block must not switch the plane")

    monkeypatch.setattr(latency.dataplane, "select", no_switch)
    (block,) = latencyplan.plan(["sidecar"], 1, [1], [], [])
    args = argparse.Namespace(block=json.dumps(block), run_dir=tmp_path, suite="suite_latency")
    out = latency.do_block(args)
    assert out["measured"] == 0 and out["already"] == 1


def test_the_widened_port_range_never_hands_out_the_sidecar_ports() -> None:
    """The client pod's ephemeral range is widened to 1024-65535 for short connections; a
    TIME_WAIT socket left on 15001 by one block made the next block's HAProxy fail to bind
    (CI, 2026-11-23). Istio's proxy ports stay reserved while the range is wide."""
    from kmesh_lab.sidecar.haproxy import Settings

    low, high = map(int, latency.TUNING["net.ipv4.ip_local_port_range"].split())
    first, last = map(int, latency.TUNING["net.ipv4.ip_local_reserved_ports"].split("-"))
    proxy = Settings()
    for port in (proxy.outbound_port, proxy.inbound_port, proxy.stats_port, 15008, 15020):
        assert low <= port <= high and first <= port <= last, port
