"""kmesh_lab.latencyplan: blocks interleave the planes per repetition (alternating
direction), legacy iptables runs last, scenarios are unique and carry the plot's params."""

from __future__ import annotations

import itertools
import json

import pytest

from kmesh_lab import latencyplan

PLANES = ["pod_ip", "kube_proxy_iptables_nft", "sidecar", "kmesh_node", "kmesh_node_accel"]


def test_every_plane_once_per_repetition_alternating_direction() -> None:
    blocks = latencyplan.plan(PLANES, 3, [1, 16], [16], [100])
    order = [(b["repetition"], b["plane"]) for b in blocks]
    assert order[:5] == [(1, p) for p in PLANES]
    assert order[5:10] == [(2, p) for p in reversed(PLANES)]
    assert order[10:] == [(3, p) for p in PLANES]
    # acceleration on/off (an agent restart) once per repetition, not twice
    accel_switches = sum(
        1
        for a, b in itertools.pairwise(blocks)
        if (a["plane"] == "kmesh_node_accel") != (b["plane"] == "kmesh_node_accel")
    )
    assert accel_switches == 3
    assert [b["index"] for b in blocks] == list(range(1, 16))


def test_legacy_runs_after_all_interleaved_repetitions() -> None:
    blocks = latencyplan.plan([*PLANES, "kube_proxy_iptables_legacy"], 2, [1], [], [])
    planes = [b["plane"] for b in blocks]
    assert planes[-2:] == ["kube_proxy_iptables_legacy"] * 2
    assert "kube_proxy_iptables_legacy" not in planes[:-2]
    assert [b["repetition"] for b in blocks[-2:]] == [1, 2]


def test_measurements_and_params_follow_the_plot_convention() -> None:
    (block,) = latencyplan.plan(["kmesh_node"], 1, [1, 128], [16], [100, 5000], 16, 2, 3)
    ms = block["measurements"]
    assert [m["scenario"] for m in ms] == [
        "conn.kmesh_node.c=1.keepalive",
        "conn.kmesh_node.c=128.keepalive",
        "conn.kmesh_node.c=16.new_connection",
        "cpu.kmesh_node.qps=100",
        "cpu.kmesh_node.qps=5000",
    ]
    conn, cpu = ms[2], ms[3]
    assert conn["params"] == {
        "data_plane": "kmesh_node",
        "connections": 16,
        "keepalive": False,
        "qps": 0,
        "duration_s": 2,
    }
    assert conn["experiments"] == ["latency.connections"]
    # CPU records must not look like points of the latency-vs-connections plot
    assert "connections" not in cpu["params"]
    assert cpu["params"]["qps"] == 100 and cpu["params"]["client_connections"] == 16
    assert cpu["experiments"] == ["latency.cpu_qps"]
    assert cpu["params"]["duration_s"] == 3


def test_scenarios_are_unique_across_blocks() -> None:
    blocks = latencyplan.plan(PLANES, 2, [1, 16], [16], [100])
    names = latencyplan.scenarios(blocks)
    assert len(names) == len(set(names)) == len(PLANES) * 4


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"planes": []}, "no data planes"),
        ({"planes": ["envoy"]}, "unknown data plane"),
        ({"planes": ["pod_ip", "pod_ip"]}, "named twice"),
        ({"repetitions": 0}, "repetitions"),
        ({"keepalive": [0]}, "keepalive"),
        ({"keepalive": [], "new_connection": [], "qps": []}, "nothing to measure"),
    ],
)
def test_bad_settings_name_the_problem(kwargs: dict, says: str) -> None:
    args = {"planes": ["pod_ip"], "repetitions": 1, "keepalive": [1], "new_connection": []}
    args.update({"qps": [100]})
    args.update(kwargs)
    with pytest.raises(latencyplan.PlanError, match=says):
        latencyplan.plan(**args)


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--planes", "pod_ip,kmesh_node", "--repetitions", "2", "--keepalive", "1,16"]
    assert latencyplan.main(argv) == 0
    blocks = json.loads(capsys.readouterr().out)
    assert len(blocks) == 4
    assert latencyplan.main(["--planes", "pod_ip", "--repetitions", "1", "--qps", "x"]) == 2
    assert "--qps" in capsys.readouterr().err
