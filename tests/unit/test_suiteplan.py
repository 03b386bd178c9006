"""kmesh_lab.suiteplan: the steps of the memory and scaling suites."""

from __future__ import annotations

import json

import pytest

from kmesh_lab import suiteplan


def test_memory_plan_starts_every_repetition_from_the_baseline() -> None:
    steps = suiteplan.memory([1, 100, 1000], repetitions=3, baseline=1, start=20000)
    assert len(steps) == 9
    assert [s["scenario"] for s in steps[::3]] == ["services=1", "services=100", "services=1000"]
    assert [s["repetition"] for s in steps[:3]] == [1, 2, 3]
    for s in steps:
        assert s["remove"] == ["suite_memory"]  # back to the baseline first
        assert s["experiments"] == ["memory.1"]
        assert s["suite_services"] + 1 == s["params"]["services"]
    assert steps[0]["write"] is None  # the base service is the one service
    assert steps[-1]["write"] == {"file": "suite_memory", "start": 20000, "count": 999}


def test_memory_plan_refuses_points_below_the_baseline() -> None:
    with pytest.raises(suiteplan.PlanError, match="below the 5 services"):
        suiteplan.memory([1, 100], repetitions=3, baseline=5, start=0)
    with pytest.raises(suiteplan.PlanError, match="repetitions"):
        suiteplan.memory([1], repetitions=0, baseline=0, start=0)


def test_scaling_plan_is_up_down_up_per_cycle() -> None:
    steps = suiteplan.scaling(batch=500, batches=3, cycles=2, start=40000)
    names = [s["scenario"] or s["params"]["phase"] for s in steps]
    cycle = [
        "up.services=500",
        "up.services=1000",
        "up.services=1500",
        "down.services=0",
        "up_again.services=500",
        "up_again.services=1000",
        "up_again.services=1500",
    ]
    assert names == [*cycle, "reset", *cycle]
    reset = steps[len(cycle)]
    assert reset["measure"] is False and reset["repetition"] == 2
    assert reset["remove"] == [f"suite_scaling-{i:03d}" for i in range(3)]
    # batches are disjoint ranges of service indexes, written one file each
    writes = [s["write"] for s in steps[:3]]
    assert [(w["start"], w["count"]) for w in writes] == [(40000, 500), (40500, 500), (41000, 500)]
    assert [s["suite_services"] for s in steps[:4]] == [500, 1000, 1500, 0]
    # each scenario once per cycle: the cycle is the repetition
    measured = [s for s in steps if s["measure"]]
    for name in cycle:
        assert [s["repetition"] for s in measured if s["scenario"] == name] == [1, 2]


def test_scaling_plan_names_the_published_experiments() -> None:
    steps = suiteplan.scaling(batch=500, batches=20, cycles=1, start=0)
    by = {s["scenario"]: s["experiments"] for s in steps}
    assert "scaling.bpftool" in by["up.services=10000"]
    assert "scaling.bpftool" not in by["up.services=500"]
    assert "scaling.log" in by["down.services=0"]
    assert "scaling.log" in by["up_again.services=500"]
    assert all("scaling.setup" in e for e in by.values())


def test_cli_prints_json_and_reports_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        suiteplan.main(
            ["scaling", "--batch", "10", "--batches", "2", "--cycles", "1", "--start", "0"]
        )
        == 0
    )
    assert len(json.loads(capsys.readouterr().out)) == 5
    assert (
        suiteplan.main(
            ["memory", "--points", "1,x", "--repetitions", "1", "--baseline", "0", "--start", "0"]
        )
        == 2
    )
    assert "comma-separated" in capsys.readouterr().err
