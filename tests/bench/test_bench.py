"""`kmesh-node bench --quick` on the real kernel: the JSON is complete and physically sane.

No assertion on speed targets: they are recorded in the JSON (with met / missed), not tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmesh_node import bench

pytestmark = pytest.mark.root

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pytest.importorskip("bcc")
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "kmesh_node", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout
    return json.loads(out.read_text())


def test_complete(result: dict) -> None:
    for key in ("suite", "quick", "sizes", "environment", "targets", "datapath", "agent"):
        assert key in result, key
    assert result["quick"] is True
    dp = result["datapath"]
    sizes = result["sizes"]
    assert sorted({(r["services"], r["pattern"]) for r in dp["connect_ns"]}) == sorted(
        (n, p) for n in sizes["connect"] for p in ("hot", "spread")
    )
    assert [r["services"] for r in dp["memory"]] == sorted(sizes["memory"])
    assert dp["connect_latency"]["services"] == sizes["compare_at"]
    agent = result["agent"]
    assert "skipped" not in agent, agent.get("skipped")
    for key in ("manifests_to_kernel_s", "change_to_kernel_ms", "rss_bytes", "rss_idle_bytes"):
        assert key in agent, key
    names = {row["name"] for row in result["summary"]}
    assert names >= {
        "connect_ns_hot",
        "connect_ns_spread",
        "memory_1",
        "vip_vs_direct",
        "manifests_10k",
        "change_p99",
    }
    for row in result["summary"]:
        assert row["target"] == bench.TARGETS[row["name"]]["max"]
        assert row["met"] in (True, False, None)


def test_connect_run_stats_are_physical(result: dict) -> None:
    for row in result["datapath"]["connect_ns"]:
        # every connect ran connect4 once (a failed connect still ran it)
        assert row["runs"] >= row["connects"] > 0
        assert row["errors"] <= row["runs"] * 0.01, row["error_kinds"]
        # one program run costs more than a few instructions and far less than a syscall
        assert 20 < row["ns_per_run"] < 100_000


def test_memory_grows_with_services(result: dict) -> None:
    mem = result["datapath"]["memory"]
    for row in mem:
        assert row["bytes"] == row["maps_bytes"] + row["programs_bytes"]
        assert row["programs_bytes"] > 0
        assert row["entries"] >= row["services"]  # at least one frontend per service
        # what the gadget sees never exceeds the truth (it misses the inner maps)
        assert row["gadget_view_distinct_bytes"] < row["maps_bytes"]
    # memory never shrinks as services are added (it may stay flat while a preallocated
    # shard fills), holds at least an 8-byte key per frontend, and costs no absurd amount
    # per service (the seeds' design: ~55 KiB per service at 10k)
    sizes = [row["maps_bytes"] for row in mem]
    assert sizes == sorted(sizes)
    for row in mem:
        assert row["maps_bytes"] >= 8 * row["services"]
        assert row["maps_bytes"] < 4 * MIB + 16 * 1024 * row["services"]


def test_connect_latency_is_physical(result: dict) -> None:
    cmp_ = result["datapath"]["connect_latency"]
    for side in ("vip_us", "direct_us"):
        d = cmp_[side]
        assert d["count"] > 0.9 * result["sizes"]["compare"]
        assert 1 < d["min"] <= d["p50"] <= d["p90"] <= d["p99"] <= d["max"] < 1e6
    assert 0.2 < cmp_["ratio_p50"] < 5


def test_agent_figures_are_physical(result: dict) -> None:
    agent = result["agent"]
    assert 0 < agent["manifests_to_kernel_s"] < 300
    assert agent["rewritten_sample"]["ok"] == agent["rewritten_sample"]["checked"] > 0
    change = agent["change_to_kernel_ms"]
    assert change["failures"] == 0 and change["revert_failures"] == 0
    # a busy host may stop the series early (bounded in time); what ran must be complete
    attempted = agent.get("changes_stopped_early", result["sizes"]["changes"])
    assert change["count"] == attempted >= 1
    assert 0 < change["p50"] <= change["p99"] < 10_000
    assert 10 * MIB < agent["rss_bytes"] < 4096 * MIB
    assert agent["agent_exit"] == 0


def test_bench_left_nothing_behind(result: dict) -> None:
    from kmesh_node.preflight import Host, cgroup2_mount

    assert len(result["labs"]) == 2
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    cg_root = Path(cgroup2_mount(Host()) or "/sys/fs/cgroup")
    for name in result["labs"]:
        assert name.startswith("kmtest-")
        assert not list(Path("/sys/fs/bpf").glob(f"{name}*"))
        assert not list(cg_root.glob(f"{name}*"))
        assert name not in netns.split()
