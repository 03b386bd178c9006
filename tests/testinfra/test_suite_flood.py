"""What roles/suite_flood leaves: results/<run_id>/suite_flood.json with, per flood stage, the
flood's size counted from the kernel, every plane (iptables, kmesh_node, and kmesh_node_accel
when the agent can accelerate) measured at every rate once per repetition with what was
hooked read back from the kernel, the A/B verdicts computed from those samples, the
new-connection throughput ratio at 10,000 services recorded; and the lab as before (no flood
pods, files, rules or hooks).

Checks the newest run under the results root; skips when that run did not include the suite.
Environment overrides as in services_state (KMESH_LAB_STATE, KMESH_LAB_RESULTS)."""

from __future__ import annotations

import json
import statistics
import subprocess
from typing import Any

import pytest

from kmesh_lab import floodplan, floodstats, netns

from .services_state import newest_run_records, state_dir

SUITE = "suite_flood"


@pytest.fixture(scope="module")
def records() -> dict[str, dict[str, Any]]:
    return newest_run_records(SUITE)


@pytest.fixture(scope="module")
def setups(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {r["params"]["stage"]: r for n, r in records.items() if n.endswith(".setup")}
    assert found, "no <stage>.setup record: the flood never came up"
    return found


def _latency(records: dict[str, dict[str, Any]], stage: str, plane: str) -> list[dict]:
    return [
        r
        for r in records.values()
        if r["params"].get("stage") == stage
        and r["params"].get("plane") == plane
        and r["params"].get("kind") == "latency"
    ]


def test_flood_size_is_counted_from_the_kernel(setups: dict[str, dict[str, Any]]) -> None:
    for stage, rec in setups.items():
        s = rec["samples"][0]
        assert s["rule_counts_from"].startswith("iptables-"), stage
        assert s["iptables_rules"] > 0 and s["kube_chains"] > 0, stage
        assert s["iptables_entries"] == s["iptables_rules"] + s["kube_chains"], stage
        # one KUBE-SERVICES rule per service port (+ the 2 targets + the nodeports rule)
        assert s["kube_services_rules"] == rec["params"]["services"] + 3, stage
        assert 1 <= s["ipt_target_rule_position"] <= s["kube_services_rules"], stage
        # every flood service has its endpoints: 3 NAT rules each, 2 per service, 5 base
        per_service = 3 * rec["params"]["endpoints_per_service"] + 2
        assert s["kube_nat_rules"] >= rec["params"]["services"] * per_service, stage
        assert s["agent_services"] > rec["params"]["services"], stage
        assert s["pods"] == rec["params"]["pods"] > 0, stage


def test_every_plane_at_every_rate_once_per_repetition(
    records: dict[str, dict[str, Any]], setups: dict[str, dict[str, Any]]
) -> None:
    for stage, setup in setups.items():
        # the stage's blocks; the accel block runs only where the agent can accelerate
        blocks = setup["params"].get("blocks", list(floodplan.BLOCKS))
        if not setup["samples"][0]["accel_available"]:
            blocks = [b for b in blocks if b != "accel"]
        planes = sorted({p for b in blocks for p in floodplan.BLOCKS[b]})
        rates = {r["params"]["rps"] for r in _latency(records, stage, "iptables")}
        assert rates, f"{stage}: iptables was not measured"
        for plane in planes:
            recs = _latency(records, stage, plane)
            assert {r["params"]["rps"] for r in recs} == rates, (stage, plane)
            for rec in recs:
                reps = sorted(s["repetition"] for s in rec["samples"])
                assert reps == list(range(1, rec["expected_samples"] + 1)), rec["scenario"]
                assert rec["expected_samples"] >= 5, rec["scenario"]


def test_samples_say_what_was_hooked_and_are_physical(records: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for rec in records.values():
        plane = rec["params"].get("plane")
        kind = rec["params"].get("kind")
        if plane is None or kind not in ("latency", "connrate", "throughput", "connect"):
            continue
        hooked = plane in ("iptables", "pod_ip_hooked")
        for s in rec["samples"]:
            assert (s["hooked_nat_kube_services_jumps"] == 2) is hooked, rec["scenario"]
            if plane.startswith("kmesh_node"):
                assert s["agent_accelerate"] is (plane == "kmesh_node_accel"), rec["scenario"]
            assert s["ok"] > 0, rec["scenario"]
            if kind == "connrate":  # a rate, no latencies: connections over the measured time
                assert s["connections_per_s"] == pytest.approx(s["ok"] / s["duration_s"])
                assert s["errors"] == sum(s["errors_by_errno"].values()), rec["scenario"]
                assert 0 <= s["max_node_cpu_pct"] <= 100.0, rec["scenario"]
                checked += 1
                continue
            keys = ("p5_ms", "p25_ms", "p50_ms", "p75_ms", "p95_ms")
            if kind == "connect":
                keys = tuple(f"connect_p{p}_us" for p in (5, 25, 50, 75, 95))
            else:
                assert 0 <= s["max_node_cpu_pct"] <= 100.0, rec["scenario"]
            pcts = [s[k] for k in keys]
            assert pcts == sorted(pcts) and pcts[0] >= 0, rec["scenario"]
            checked += 1
    assert checked > 0


def test_verdicts_follow_from_the_samples(records: dict[str, dict[str, Any]]) -> None:
    compared = [r for n, r in records.items() if ".compare." in n]
    assert compared, "no A/B comparison was recorded"
    for rec in compared:
        v = rec["samples"][0]
        a, b = (records[n] for n in rec["params"]["compared"])
        metric = rec["params"]["metric"]
        av = [s[metric] for s in a["samples"]]
        bv = [s[metric] for s in b["samples"]]
        again = floodstats.compare(v["a"], av, v["b"], bv, metric, v["unit"])
        assert again["verdict"] == v["verdict"] in (floodstats.EXCEEDS, floodstats.WITHIN)
        assert v["median_a"] == pytest.approx(statistics.median(av))
        assert v["statement"], rec["scenario"]


def test_the_10k_throughput_ratio_is_recorded(
    records: dict[str, dict[str, Any]], setups: dict[str, dict[str, Any]]
) -> None:
    at_10k = [st for st, rec in setups.items() if rec["params"]["services"] >= 10000]
    if not at_10k:
        pytest.skip("no stage with 10,000 services in this run")
    for stage in at_10k:
        # the target is the TCP connection rate's; the short HTTP requests' ratio is beside it
        for prefix, kind in (
            ("throughput_ratio", "connrate"),
            ("http_throughput_ratio", "throughput"),
        ):
            rec = records[f"{stage}.{prefix}.kmesh_node_vs_iptables"]
            s = rec["samples"][0]
            ipt, km = (records[n] for n in rec["params"]["compared"])
            assert ipt["params"]["kind"] == km["params"]["kind"] == kind
            ratio = statistics.median(x["connections_per_s"] for x in km["samples"]) / (
                statistics.median(x["connections_per_s"] for x in ipt["samples"])
            )
            assert s["ratio"] == pytest.approx(ratio)
            assert s["ratio_ci_low"] <= ratio <= s["ratio_ci_high"]
            assert f"{ratio:.2f}x" in s["statement_ratio"]
            if kind == "connrate":
                assert s["target_ratio"] == 4.0 and s["meets_target"] is (ratio >= 4.0)
            else:
                assert "target_ratio" not in s


def test_the_lab_is_as_before() -> None:
    state = state_dir()
    lab = json.loads((state / "lab.json").read_text())
    prefix = lab["prefix"]
    assert not [n for n in netns.namespaces() if n.startswith(f"{prefix}-{floodplan.POD_PREFIX}")]
    assert not (state / "flood").exists()
    assert not list((state / "manifests").glob("suite_flood*"))
    save = subprocess.run(
        ["ip", "netns", "exec", lab["node_ns"], "iptables-nft-save"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-j KUBE-SERVICES" not in save and ":KUBE-SVC-" not in save
