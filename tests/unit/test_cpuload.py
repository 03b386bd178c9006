"""The CPU suite's figures from cgroup and BPF counters (no root: readings are given)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kmesh_lab import cpuload, loadgen

CPU_STAT = "usage_usec 5000000\nuser_usec 1000000\nsystem_usec 4000000\nnr_periods 10\n"
PROC_STAT = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n"


def test_parse_cpu_stat_and_proc_stat() -> None:
    assert cpuload.parse_cpu_stat(CPU_STAT) == {
        "usage_usec": 5000000,
        "user_usec": 1000000,
        "system_usec": 4000000,
    }
    with pytest.raises(cpuload.MeasureError, match="usage_usec"):
        cpuload.parse_cpu_stat("nr_periods 1\n")
    # busy = user + nice + system + irq + softirq + steal; idle and iowait are not busy
    assert cpuload.parse_proc_stat(PROC_STAT) == (160, 980)
    assert cpuload.node_busy_pct((160, 980), (260, 1180)) == pytest.approx(50.0)


def test_plan_instances_spread_over_client_pods() -> None:
    inst = cpuload.plan_instances(["client-1", "client-0"], 4, 250)
    assert [(i.name, i.pod, i.cpu_m) for i in inst] == [
        ("app-0", "client-0", 250),
        ("app-1", "client-1", 250),
        ("app-2", "client-0", 250),
        ("app-3", "client-1", 250),
    ]
    assert cpuload.plan_instances([], 0, 0) == []
    with pytest.raises(ValueError, match="netns_lab_clients"):
        cpuload.plan_instances([], 1, 0)


def prog(name: str, ns: int, cnt: int) -> dict:
    return {"name": name, "delta_run_time_ns": ns, "delta_run_cnt": cnt}


def test_limited_window_figures_one_core_and_node() -> None:
    inst = [cpuload.Instance(f"app-{i}", "client-0", 250) for i in range(4)]
    # 2 s window on 2 CPUs; each app used 0.5 s (its whole 250m); eBPF 0.2 s in 10,000 runs.
    deltas = {
        i.name: {"usage_usec": 500_000, "user_usec": 100_000, "system_usec": 400_000} for i in inst
    }
    progs = [prog("kmn_connect4", 150_000_000, 8000), prog("kmn_sendmsg4", 50_000_000, 2000)]
    s = cpuload.window_sample(2.0, 2, inst, deltas, progs, 90.0)
    assert s["pod_cpu_pct_core"] == pytest.approx(100.0)
    assert s["pod_cpu_pct_node"] == pytest.approx(50.0)
    assert s["ebpf_cpu_pct_core"] == pytest.approx(10.0)
    assert s["ebpf_cpu_pct_node"] == pytest.approx(5.0)
    assert s["connect4_cpu_pct_core"] == pytest.approx(7.5)
    assert s["connect4_ns_per_run"] == pytest.approx(18_750)
    assert s["app_cpu_pct_core"] == pytest.approx(90.0)
    assert s["pod_user_pct_node"] == pytest.approx(10.0)
    assert s["pod_system_pct_node"] == pytest.approx(40.0)
    assert s["limit_pct_core"] == pytest.approx(100.0)
    assert s["limit_pct_node"] == pytest.approx(50.0)
    assert s["ebpf_share_of_limit_pct"] == pytest.approx(10.0)
    assert s["max_app_share_of_limit_pct"] == pytest.approx(100.0)
    assert s["limit_slack_pct"] == pytest.approx(5.0)
    assert s["within_limit"] is True
    assert s["node_busy_pct_node"] == 90.0


def test_within_limit_allows_one_cfs_period_and_no_more() -> None:
    inst = [cpuload.Instance("app-0", "client-0", 1000)]
    progs = [prog("kmn_connect4", 0, 0)]
    # 1 s window: one 0.1 s period of slack -> 1.1 s of CPU is the most that still counts
    ok = cpuload.window_sample(1.0, 2, inst, {"app-0": {"usage_usec": 1_100_000}}, progs, 50)
    over = cpuload.window_sample(1.0, 2, inst, {"app-0": {"usage_usec": 1_150_000}}, progs, 50)
    assert ok["within_limit"] is True
    assert over["within_limit"] is False
    assert "connect4_ns_per_run" not in ok  # no runs, no average


def test_unlimited_and_idle_windows_carry_no_limit_figures() -> None:
    inst = [cpuload.Instance("app-0", "client-0", 0), cpuload.Instance("app-1", "client-0", 0)]
    deltas = {"app-0": {"usage_usec": 900_000}, "app-1": {"usage_usec": 300_000}}
    s = cpuload.window_sample(1.0, 2, inst, deltas, [prog("kmn_connect4", 10_000_000, 100)], 99)
    assert "limit_pct_core" not in s and "within_limit" not in s
    assert s["max_app_cpu_pct_core"] == pytest.approx(90.0)
    assert s["ebpf_share_of_pod_cpu_pct"] == pytest.approx(1.0 / 120.0 * 100)
    idle = cpuload.window_sample(1.0, 2, [], {}, [], 3.0)
    assert idle["apps"] == 0 and "pod_cpu_pct_core" not in idle
    with pytest.raises(cpuload.MeasureError, match="clock"):
        cpuload.window_sample(0.0, 2, [], {}, [], 0.0)


def result(qps: float, count: int, errors: int, p99: float) -> loadgen.LoadResult:
    return loadgen.parse_data(
        {
            "ActualQPS": qps,
            "ActualDuration": 5e9,
            "NumThreads": 100,
            "RetCodes": {"200": count, **({"-1": errors} if errors else {})},
            "DurationHistogram": {
                "Count": count,
                "Min": 0.001,
                "Max": p99,
                "Avg": 0.01,
                "StdDev": 0.0,
                "Percentiles": [
                    {"Percentile": 50, "Value": 0.01},
                    {"Percentile": 99, "Value": p99},
                ],
            },
            "SocketCount": count,
            "Runner": "wrk",
        }
    )


def test_load_figures_add_up_instances() -> None:
    figs = cpuload.load_figures([result(1000, 5000, 0, 0.2), result(500, 2500, 3, 0.4)])
    assert figs["load_qps"] == 1500
    assert figs["load_requests"] == 7500
    assert figs["load_errors"] == 3
    assert figs["load_connections"] == 200
    assert figs["load_p99_ms"] == pytest.approx(400.0)
    assert cpuload.load_figures([]) == {}


def test_started_processes_write_to_files_not_a_pipe(tmp_path: Path) -> None:
    # More than a pipe holds (64 KiB): with a pipe read only at the end, the writer stalls.
    out, log = tmp_path / "out.jsonl", tmp_path / "err.log"
    argv = [sys.executable, "-c", "import sys; print('x' * 200000); print('oops', file=sys.stderr)"]
    proc = cpuload._start(argv, tmp_path, log, out)
    assert cpuload._finish(proc, timeout=20) == 0
    assert len(out.read_text()) == 200001
    assert log.read_text().strip() == "oops"


def test_an_overrunning_process_is_stopped(tmp_path: Path) -> None:
    proc = cpuload._start(
        [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, tmp_path / "l"
    )
    assert cpuload._finish(proc, timeout=0.5) == 124
    assert proc.poll() is not None
