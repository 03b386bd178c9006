"""What roles/suite_cpu leaves: results/<run_id>/suite_cpu.json with every scenario measured
and physically sane, and the lab as it was before the suite (no app cgroups, pod limits as
the lab declares them, the agent without a stress loop)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from kmesh_lab import cgroups, cpugroups

from .conftest import REPO, STATE

# Read-skew allowance: counters and clocks are read one after the other, microseconds apart
# over windows of seconds; a share of the node above 100% by more than this is a bug.
SKEW_PCT = 0.1


def _state() -> dict:
    path = Path(os.environ.get("KMESH_LAB_STATE", STATE.parent)) / "lab.json"
    assert path.is_file(), f"{path} is missing: bring the lab up first (make lab)"
    return json.loads(path.read_text())


def latest_cpu_results() -> Path:
    root = Path(os.environ.get("KMESH_LAB_RESULTS", REPO / "results"))
    runs = sorted(root.glob("*/suite_cpu.json"), key=lambda p: p.stat().st_mtime)
    assert runs, f"no suite_cpu.json under {root}: run `ansible-playbook site.yml --tags suite_cpu`"
    return runs[-1]


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    doc = json.loads(latest_cpu_results().read_text())
    assert doc["suite"] == "suite_cpu"
    return {r["scenario"]: r for r in doc["records"]}


def _one(records: dict[str, dict], prefix: str) -> list[dict]:
    found = [r for name, r in records.items() if name.startswith(prefix)]
    assert found, f"no scenario {prefix}* in suite_cpu.json (have {sorted(records)})"
    return found


def test_every_seed_scenario_is_there_with_all_its_samples(records: dict[str, dict]) -> None:
    for prefix, count in (
        ("1_1.", 1),
        ("1_2.", 1),
        ("1_3.loops=10000.", 1),
        ("1_3.loops=65535.", 1),
        ("2_1.threads=", 4),
        ("2_2.stress.", 1),
        ("2_2.probe-idle.", 1),
        ("2_2.control.", 1),
    ):
        assert len(_one(records, prefix)) == count, prefix
    for name, rec in records.items():
        assert rec["samples"], name
        assert len(rec["samples"]) == rec["expected_samples"] >= 3, name
        assert rec["published"], f"{name}: no published figures copied"
        assert {f["experiment"] for f in rec["published"]} == set(rec["experiments"]), name


def test_figures_are_within_physical_bounds(records: dict[str, dict]) -> None:
    for name, rec in records.items():
        for sample in rec["samples"]:
            ncpu = sample["ncpu"]
            assert ncpu >= 1 and sample["window_s"] > 0, name
            for key, value in sample.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                assert math.isfinite(value), (name, key)
                if key.endswith("_pct_node"):
                    assert -SKEW_PCT <= value <= 100 + SKEW_PCT, (name, key, value)
                elif key.endswith("_pct_core"):
                    assert -SKEW_PCT <= value <= 100 * ncpu + SKEW_PCT, (name, key, value)
                elif key.endswith(("_ms", "_per_s", "_per_run", "qps", "requests", "errors")):
                    assert value >= 0, (name, key, value)
            # eBPF time runs inside the connecting task, so it is part of the pod's usage.
            if sample["apps"]:
                assert sample["load_requests"] > 0, name
                assert sample["connect4_runs_per_s"] > 0, f"{name}: the VIP bypassed connect4"
                assert sample["app_cpu_pct_core"] >= -SKEW_PCT, name


def test_limited_scenarios_answer_the_seeds_question(records: dict[str, dict]) -> None:
    for prefix in ("1_1.", "1_2.", "1_3."):
        for rec in _one(records, prefix):
            for s in rec["samples"]:
                assert isinstance(s["within_limit"], bool), rec["scenario"]
                assert s["limit_pct_core"] == pytest.approx(100.0), rec["scenario"]
                assert s["limit_pct_node"] == pytest.approx(100.0 / s["ncpu"])
                assert 0 <= s["ebpf_share_of_limit_pct"] <= s["pod_share_of_limit_pct"] + SKEW_PCT


def test_stress_loop_was_compiled_in(records: dict[str, dict]) -> None:
    def median_ns(prefix: str) -> float:
        (rec,) = _one(records, prefix)
        return rec["summary"]["connect4_ns_per_run"]["median"]

    base = median_ns("1_1.")
    assert median_ns("1_3.loops=10000.") > base
    assert median_ns("1_3.loops=65535.") > median_ns("1_3.loops=10000.")
    assert median_ns("2_2.stress.") > median_ns("2_2.control.")


def test_probe_ran_in_every_2_2_window(records: dict[str, dict]) -> None:
    for rec in _one(records, "2_2."):
        for s in rec["samples"]:
            assert s["probe_count"] > 0, rec["scenario"]
            assert s["probe_cmd_p50_ms"] is not None and s["probe_cmd_p50_ms"] > 0


def test_sweep_records_its_scaling(records: dict[str, dict]) -> None:
    for rec in _one(records, "2_1.threads="):
        p = rec["params"]
        assert p["apps_requested"] == "auto"
        assert p["seed_apps"] == 8 and p["seed_cores"] == 8
        assert p["connections_per_app"] == p["seed_threads"]
        assert p["apps"] == max(1, round(8 * rec["samples"][0]["ncpu"] / 8))


def test_lab_is_back_to_its_pre_suite_state() -> None:
    state = _state()
    layout = cgroups.detect()
    assert cpugroups.existing(layout, state["prefix"]) == [], "app cgroups left behind"
    if layout.v1_cpu_root is not None:
        left = list((layout.v1_cpu_root / state["prefix"]).glob(cpugroups.GROUP_PREFIX + "*"))
        assert left == [], f"v1 cpu groups left behind: {left}"
    for name, pod in state["pods"].items():
        assert cgroups.limit_of(layout, pod["cgroup"]) == pod["cpu_m"], name


def test_agent_runs_without_stress_loop() -> None:
    state_dir = Path(os.environ.get("KMESH_LAB_STATE", STATE.parent))
    pidfile = state_dir / "pids" / "kmesh-node.pid"
    assert pidfile.is_file(), f"{pidfile} is missing: the agent is not running"
    pid = pidfile.read_text().split()[0]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--stress-loops" in argv, argv
    assert argv[argv.index(b"--stress-loops") + 1] == b"0"
