"""The flood suite's pure parts: the flooder plan, the A/B verdict on synthetic samples, the
hook bookkeeping read from iptables output, and the flood pods' addresses."""

from __future__ import annotations

import random

import pytest

from kmesh_lab import floodhooks, floodlab, floodplan, floodstats
from kmesh_lab import kube_proxy as kp

THESIS = {
    "pods": 50,
    "services": 500,
    "rates": [200, 1000, 1500],
    "keepalive": [True, False],
    "repetitions": 6,
    "duration_s": 30,
    "throughput_s": 10,
    "blocks": ["base", "accel"],
}


# ------------------------------------------------------------------ plan


def test_thesis_stage_defaults_every_pod_to_an_endpoint_of_every_service() -> None:
    st = floodplan.stage_from("thesis", THESIS)
    assert st.endpoints == st.pods == 50
    # 5 base + 500 x (3 x 50 + 2) + the two targets with 2 endpoints each
    assert st.kube_nat_rules() == 5 + 500 * 152 + 2 * 8
    assert floodplan.endpoint_indices(7, 50, 50) == [(7 + j) % 50 for j in range(50)]
    assert floodplan.endpoint_indices(7, 1, 50) == [7]


def test_schedule_interleaves_and_rotates_the_planes() -> None:
    st = floodplan.stage_from("thesis", THESIS)
    reps = floodplan.schedule(st, "base")
    assert len(reps) == 6
    first, second = reps[0], reps[1]
    latency = [r for r in first if r.kind == "latency"]
    # every (keepalive, rate) has both planes, adjacent: an A/B pair
    assert len(latency) == 2 * 3 * 2
    for a, b in zip(latency[::2], latency[1::2], strict=True):
        assert (a.rate, a.keepalive) == (b.rate, b.keepalive)
        assert {a.plane, b.plane} == {"iptables", "kmesh_node"}
    assert first[0].plane == "iptables" and second[0].plane == "kmesh_node"
    # throughput of both planes plus the mechanism check (pod IP hooked / unhooked): the TCP
    # connection rate and the short HTTP requests, every plane once each
    tput = {r.plane for r in first if r.kind == "throughput"}
    assert tput == {"iptables", "kmesh_node", "pod_ip_hooked", "pod_ip_unhooked"}
    assert {r.plane for r in first if r.kind == "connrate"} == tput
    # timed connects (first-packet round trip) of the same four
    assert {r.plane for r in first if r.kind == "connect"} == tput
    assert [r.order for r in first] == list(range(len(first)))
    accel = floodplan.schedule(st, "accel")[0]
    assert {r.plane for r in accel} == {"iptables", "kmesh_node_accel"}
    # iptables is measured in both blocks under names of its own
    assert not {r.scenario for r in accel} & {r.scenario for r in first}


def test_scenarios_and_targets() -> None:
    st = floodplan.stage_from("svc", {**THESIS, "services": 10000, "target_position": "last"})
    names = floodplan.target_names(st)
    assert names["iptables"] != names["kmesh_node"] == names["kmesh_node_accel"]
    # "-" sorts before ":", so the target comes right after flood-09999 in ns/name:port order
    keys = sorted(
        [f"lab/{floodplan.service_name(i)}:http" for i in (9998, 9999)]
        + [f"lab/{names['iptables']}:http"]
    )
    assert keys[-1] == f"lab/{names['iptables']}:http"
    mid = floodplan.target_names(floodplan.stage_from("m", THESIS))["iptables"]
    keys = sorted(
        [f"lab/{floodplan.service_name(i)}:http" for i in (249, 250)] + [f"lab/{mid}:http"]
    )
    assert keys[1] == f"lab/{mid}:http"
    scen = floodplan.scenarios(st)
    assert scen[0] == "svc.setup" and "svc.base.iptables.rps=200.ka=on" in scen
    assert "svc.accel.kmesh_node_accel.throughput" in scen
    assert "svc.base.iptables.connrate" in scen
    assert "svc.base.pod_ip_hooked.connect" in scen


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"repetitions": 4}, "at least 5"),
        ({"endpoints": 51}, "endpoints <= pods"),
        ({"pods": 0}, ">= 1"),
        ({"blocks": ["sidecar"]}, "not one of"),
        ({"target_position": "first"}, "target_position"),
        ({"podz": 3}, "unknown keys"),
    ],
)
def test_bad_stage_values_name_the_fix(change: dict, words: str) -> None:
    with pytest.raises(floodplan.PlanError, match=words):
        floodplan.stage_from("bad", {**THESIS, **change})


def test_plan_cli_lists_pending(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    stages = {"s": {**THESIS, "repetitions": 5, "blocks": ["base"]}}
    st = floodplan.stage_from("s", stages["s"])
    done = floodplan.scenarios(st)
    assert floodplan.main([json.dumps(stages), json.dumps(done)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stages"][0]["pending"] == []
    assert floodplan.main([json.dumps(stages)]) == 0
    assert json.loads(capsys.readouterr().out)["stages"][0]["pending"] == done
    assert floodplan.main(['{"s": {"pods": 1}}']) == 2
    assert "lacks" in capsys.readouterr().err


# ------------------------------------------------------------------ statistics


def test_clearly_different_samples_exceed_noise() -> None:
    a = [2.0, 2.1, 1.9, 2.05, 1.95]
    b = [0.50, 0.55, 0.45, 0.52, 0.48]
    cmp = floodstats.compare("iptables", a, "kmesh_node", b, "p50_ms", "ms")
    assert cmp["verdict"] == floodstats.EXCEEDS and cmp["exceeds_noise"]
    assert cmp["mannwhitney_p"] < 0.05
    assert cmp["ci_high"] < 0 < cmp["median_a"] - cmp["median_b"]
    assert "kmesh_node is lower than iptables" in cmp["statement"]
    assert "better" in cmp["statement"]
    assert cmp["spread_b"]["p5"] <= cmp["spread_b"]["median"] <= cmp["spread_b"]["p95"]


def test_samples_of_one_distribution_are_within_noise() -> None:
    rng = random.Random(3)
    a = [rng.gauss(5.0, 1.0) for _ in range(6)]
    b = [rng.gauss(5.0, 1.0) for _ in range(6)]
    cmp = floodstats.compare("iptables", a, "kmesh_node", b, "p50_ms", "ms")
    assert cmp["verdict"] == floodstats.WITHIN and not cmp["exceeds_noise"]
    assert cmp["ci_low"] <= 0 <= cmp["ci_high"]
    assert "within the noise" in cmp["statement"]


def test_identical_values_are_within_noise_and_throughput_direction() -> None:
    cmp = floodstats.compare("a", [1.0] * 5, "b", [1.0] * 5, "x", "ms")
    assert cmp["verdict"] == floodstats.WITHIN and cmp["mannwhitney_p"] == 1.0
    # higher throughput is better
    tp = floodstats.compare(
        "iptables",
        [100, 110, 90, 105, 95],
        "kmesh",
        [500, 520, 480, 510, 490],
        "connections_per_s",
        "conn/s",
        lower_is_better=False,
    )
    assert tp["exceeds_noise"] and "better" in tp["statement"]
    low, high = floodstats.ratio_ci([100, 110, 90, 105, 95], [500, 520, 480, 510, 490])
    assert low <= 5.0 <= high and low > 4.0


def test_too_few_repetitions_is_an_error() -> None:
    with pytest.raises(floodstats.StatsError, match="at least 3"):
        floodstats.compare("a", [1, 2], "b", [1, 2, 3], "x", "ms")


def test_spread_is_the_thesis_box() -> None:
    s = floodstats.spread([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert s["p5"] < s["p25"] < s["median"] < s["p75"] < s["p95"]
    assert s["mean"] == 5.5 and s["median"] == 5.5


# ------------------------------------------------------------------ hooks and positions

SAVE = """*nat
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -m comment --comment "lab/flood-00000:http cluster IP" -d 10.96.0.1 -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "lab/flood-00001-tipt:http cluster IP" -d 10.96.0.2 -j KUBE-B
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -j KUBE-NODEPORTS
COMMIT
"""


def test_target_position_is_read_from_the_save() -> None:
    pos = floodhooks.kube_services_position(SAVE, "lab/flood-00001-tipt:http")
    assert pos == {"position": 2, "rules": 3}
    assert floodhooks.kube_services_position(SAVE, "lab/nope:http") is None


def test_hook_summary_counts_kube_services_jumps() -> None:
    jumps = {
        "nat": [
            '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            "-A POSTROUTING -j KUBE-POSTROUTING",
        ],
        "filter": ["-A FORWARD -m conntrack --ctstate NEW -j KUBE-SERVICES"],
    }
    assert floodhooks.summary(jumps) == {
        "hooked_jumps": 4,
        "hooked_kube_services_jumps": 3,
        "hooked_nat_kube_services_jumps": 2,
    }
    # what hook() inserts is kube-proxy's own jump list
    assert any(j.src == "PREROUTING" and j.dst == kp.KUBE_SERVICES for j in kp.JUMPS)


def test_flood_pods_take_the_top_of_the_cidr() -> None:
    addrs = floodlab.pod_addresses("10.244.14.0/24", {"10.244.14.2", "10.244.14.3"}, 3)
    assert addrs == ["10.244.14.254", "10.244.14.253", "10.244.14.252"]
    with pytest.raises(ValueError, match="larger netns_lab_pod_cidr"):
        floodlab.pod_addresses("10.244.14.0/29", {"10.244.14.2", "10.244.14.3"}, 5)


def test_connect_probe_percentiles() -> None:
    from kmesh_lab import connectprobe

    out = connectprobe.summarize([float(v) for v in range(1, 101)], errors=2)
    assert out["count"] == 100 and out["errors"] == 2
    assert out["connect_p50_us"] == 50.5 and out["connect_mean_us"] == 50.5
    assert out["connect_p5_us"] < out["connect_p95_us"] < out["connect_p99_us"] <= 100
    assert connectprobe.summarize([], errors=3) == {"count": 0, "errors": 3}
    assert connectprobe.main(["--target", "nohost", "--count", "1"]) == 2
