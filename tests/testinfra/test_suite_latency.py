"""What roles/suite_latency leaves: results/<run_id>/suite_latency.json with every data plane
of the profile measured at every point (latency vs connections, keepalive and new
connections; CPU at equal QPS) once per repetition, percentiles ordered, the data plane
named in params and environment (kernel rule counts, proxy and version, acceleration), and
the lab as before (no rules, no sidecars, acceleration off, the agent's own services).

Checks the newest run under the results root; skips when that run did not include the suite
(a converge without suite_latency)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kmesh_lab import daemon, dataplane, kube_proxy_apply

from .conftest import REPO
from .services_state import assert_lab_as_before, newest_run_records, state_dir

SUITE = "suite_latency"


@pytest.fixture(scope="module")
def records() -> dict[str, dict[str, Any]]:
    return newest_run_records(SUITE)


@pytest.fixture(scope="module")
def profile(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The role's profile the run used (environment.lab.profile)."""
    any_rec = next(iter(records.values()))
    name = any_rec["environment"].get("lab", {}).get("profile", "quick")
    defaults = yaml.safe_load((REPO / "roles" / SUITE / "defaults" / "main.yml").read_text())
    return defaults["suite_latency_profiles"][name]


def measured(records: dict[str, dict[str, Any]], plane: str) -> list[dict[str, Any]]:
    return [
        r
        for r in records.values()
        if r["params"].get("data_plane") == plane and not r["scenario"].startswith("missing.")
    ]


def test_every_plane_of_the_profile_is_measured(
    records: dict[str, dict[str, Any]], profile: dict[str, Any]
) -> None:
    for plane in profile["planes"]:
        missing = records.get(f"missing.{plane}")
        assert missing is None, f"{plane} was not measured: {missing['params']['missing']}"
        assert measured(records, plane), f"no record of {plane}"


def test_every_point_has_every_repetition(
    records: dict[str, dict[str, Any]], profile: dict[str, Any]
) -> None:
    for plane in profile["planes"]:
        names = {r["scenario"] for r in measured(records, plane)}
        want = {f"conn.{plane}.c={c}.keepalive" for c in profile["keepalive_connections"]}
        want |= {
            f"conn.{plane}.c={c}.new_connection" for c in profile["new_connection_connections"]
        }
        want |= {f"cpu.{plane}.qps={q}" for q in profile["qps"]}
        assert names == want, plane
        for name in names:
            rec = records[name]
            reps = sorted(s["repetition"] for s in rec["samples"])
            assert reps == list(range(1, rec["expected_samples"] + 1)), name
            assert rec["expected_samples"] == profile["repetitions"], name
            assert rec["published"], name  # seed 004's figures, from published.yml


def test_percentiles_are_ordered_and_loads_succeeded(records: dict[str, dict[str, Any]]) -> None:
    for name, rec in records.items():
        if not name.startswith(("conn.", "cpu.")):
            continue
        for s in rec["samples"]:
            assert 0 <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"], (name, s["repetition"])
            assert s["qps"] > 0 and s["ok"] > 0, name
            assert s["error_pct"] < 50, (name, s["ret_codes"])
            for key in ("app", "proxy", "total", "client", "server"):
                assert s[f"{key}_cpu_pct_node"] >= 0, (name, key)
            assert s["total_cpu_pct_node"] >= s["app_cpu_pct_node"], name
            assert s["total_cpu_pct_node"] <= 100.5, name
        summ = rec["summary"]
        assert summ["p50_ms"]["min"] <= summ["p50_ms"]["median"] <= summ["p50_ms"]["max"]


def test_cpu_loads_hold_their_rate_and_read_ebpf(records: dict[str, dict[str, Any]]) -> None:
    for name, rec in records.items():
        if not name.startswith("cpu."):
            continue
        q = rec["params"]["qps"]
        for s in rec["samples"]:
            assert "ebpf_cpu_pct_node" in s and s["ebpf_cpu_pct_node"] >= 0, name
            if q <= 1000:  # any plane carries 1000 requests/s on a small node
                assert s["qps"] >= 0.5 * q, (name, s["qps"])


def test_params_and_environment_say_what_was_loaded(records: dict[str, dict[str, Any]]) -> None:
    for name, rec in records.items():
        if not name.startswith(("conn.", "cpu.")):
            continue
        p, plane = rec["params"], rec["params"]["data_plane"]
        for key in ("keepalive", "qps", "duration_s", "acceleration", "kube_proxy", "proxy"):
            assert key in p, (name, key)
        assert ("connections" in p) == name.startswith("conn."), name
        env = rec["environment"]["data_plane"]
        assert env["name"] == plane
        assert env["acceleration"] is (plane == "kmesh_node_accel") is p["acceleration"], name
        if plane == "sidecar":
            assert env["proxy"]["name"] and env["proxy"]["version"], name
            assert p["proxy"] == env["proxy"]["name"]
            assert all(s["proxy_cpu_pct_node"] > 0 for s in rec["samples"]), name
        else:
            assert env["proxy"] is None and p["proxy"] is None, name
        if plane in dataplane.KUBE_PROXY:
            rules = env["kube_proxy_rules"]
            assert rules.get("kube_nat_rules", rules.get("rules", 0)) > 0, name
        else:
            assert env["kube_proxy_rules_in_kernel"] == 0, name
        if plane in dataplane.KMESH_PLANES:
            assert env["agent"]["suite_files"], name
        else:
            assert not env["agent"]["suite_files"], name


def test_planes_are_compared_within_repetitions(records: dict[str, dict[str, Any]]) -> None:
    comps = [r for n, r in records.items() if n.startswith("compare.")]
    if not (measured(records, "sidecar") and measured(records, "kmesh_node")):
        pytest.skip("sidecar or kmesh_node was not measured: nothing to compare")
    assert comps
    for rec in comps:
        for s in rec["samples"]:
            if "p90_reduction_vs_sidecar_pct" in s:
                assert s["p90_reduction_vs_sidecar_pct"] <= 100


def test_the_lab_is_as_before(records: dict[str, dict[str, Any]]) -> None:
    assert_lab_as_before(SUITE)
    state = json.loads((state_dir() / "lab.json").read_text())
    node = state["node_ns"]
    assert kube_proxy_apply.rule_counts(node, "iptables", "nft")["kube_nat_rules"] == 0
    assert kube_proxy_apply.rule_counts(node, "nftables")["rules"] == 0
    for pod in state["pods"]:
        assert daemon.running(state_dir(), f"sidecar-{pod}") is None, pod
    argv = json.loads(daemon.argvfile(state_dir(), "kmesh-node").read_text())["argv"]
    assert dataplane.ACCEL_FLAG not in argv
