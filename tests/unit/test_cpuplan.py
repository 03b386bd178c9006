"""The CPU suite's run order: phases, interleaving, resume, node scaling, time left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmesh_lab import cpuplan, results

A = {
    "name": "1_1",
    "experiment": "cpu.1_1",
    "stress_loops": 0,
    "interleave": "lim",
    "apps": 1,
    "app_cpu_m": 1000,
    "connections": 1500,
}
B = {
    "name": "1_2",
    "experiment": "cpu.1_2",
    "stress_loops": 0,
    "interleave": "lim",
    "apps": 4,
    "app_cpu_m": 250,
    "connections": 1500,
}
S = {
    "name": "2_2",
    "experiment": "cpu.2_2",
    "stress_loops": 65535,
    "apps": "auto",
    "connections": 3000,
    "runs": 1,
    "windows": 3,
    "window_s": 5,
    "probe": True,
}
Z = {
    "name": "1_3",
    "experiment": "cpu.1_3",
    "stress_loops": 10000,
    "apps": 4,
    "app_cpu_m": 250,
    "connections": 1500,
}


def names(plan: dict) -> list[tuple[str, int]]:
    return [(r["name"], r["rep"]) for r in plan["runs"]]


def test_interleaves_within_a_phase_and_restarts_the_agent_once_per_phase() -> None:
    plan = cpuplan.plan([A, B, Z, S], {}, 3, 1.0, 3.0, 3.0, ncpu=2)
    assert plan["phases"] == [0, 10000, 65535]
    assert names(plan) == [
        ("1_1", 1),
        ("1_2", 1),
        ("1_1", 2),
        ("1_2", 2),
        ("1_1", 3),
        ("1_2", 3),
        ("1_3", 1),
        ("1_3", 2),
        ("1_3", 3),
        ("2_2", 1),
    ]


def test_resume_skips_recorded_repetitions_and_whole_runs_of_windows() -> None:
    # 1_1 has 2 samples, 1_2 one, 2_2 two windows of three (an interrupted run: redone).
    plan = cpuplan.plan([A, B, S], {"1_1": 2, "1_2": 1, "2_2": 2}, 3, 1.0, 3.0, 3.0, ncpu=2)
    assert names(plan) == [("1_2", 2), ("1_1", 3), ("1_2", 3), ("2_2", 1)]
    done = cpuplan.plan([A], {"1_1": 3}, 3, 1.0, 3.0, 3.0, ncpu=2)
    assert done["runs"] == [] and done["phases"] == [] and done["total_s"] == 0


@pytest.mark.parametrize(("ncpu", "apps"), [(2, 2), (8, 8), (1, 1), (16, 16)])
def test_auto_apps_scale_the_seeds_8_apps_on_8_cores(ncpu: int, apps: int) -> None:
    run = cpuplan.plan([S], {}, 3, 1.0, 3.0, 3.0, ncpu=ncpu)["runs"][0]
    assert run["apps"] == apps
    assert run["apps_requested"] == "auto"
    assert (run["seed_apps"], run["seed_cores"]) == (8, 8)


def test_expected_samples_and_time_left() -> None:
    plan = cpuplan.plan([A, S], {}, 3, 1.0, 3.0, 2.0, ncpu=2)
    a1, s1 = plan["runs"][0], plan["runs"][-1]
    assert a1["expected_samples"] == 3 and s1["expected_samples"] == 3
    # 1_1: ceil(1 + 3 + 1) + 2 = 7 s per run; 2_2: ceil(1 + 3 * 5 + 1) + 2 = 19 s
    assert plan["total_s"] == 3 * 7 + 19
    assert [r["eta_s"] for r in plan["runs"]] == [33, 26, 19, 0]
    assert a1["label"] == "1_1 rep 1/3 - run 1/4, ~33s left after it"
    assert plan["runs"][-1]["label"].endswith("~0s left after it")


def test_ansible_text_numbers_are_accepted() -> None:
    text = dict(A, connections="1500", stress_loops="0", window_s="3", probe="False")
    run = cpuplan.plan([text], {}, 1, 1.0, 3.0, 3.0, ncpu=2)["runs"][0]
    assert run["connections"] == 1500 and run["stress_loops"] == 0
    assert run["window_s"] == 3.0 and run["probe"] is False


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"name": "x", "stress_loops": 0}, "lacks apps"),
        (dict(A, apps=-1), "apps -1"),
        (dict(A, connections=0), "connections >= 1"),
        (dict(A, runs=0), "runs and windows"),
        (dict(A, window_s="soon"), "not seconds"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cpuplan.plan([bad], {}, 3, 1.0, 3.0, 3.0, ncpu=2)


def test_repeated_names_are_refused() -> None:
    with pytest.raises(ValueError, match="repeat"):
        cpuplan.plan([A, A], {}, 3, 1.0, 3.0, 3.0, ncpu=2)


def test_cli_reads_what_the_run_already_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"host": "test"}
    rec = results.make_record("suite_cpu", "1_1", {}, [{"x": 1}], env=env, expected_samples=3)
    results.write_records(tmp_path, "suite_cpu", [rec])
    rc = cpuplan.main(["--scenarios", json.dumps([A]), "--run-dir", str(tmp_path), "--ncpu", "2"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["rep"] for r in out["runs"]] == [2, 3]
    assert cpuplan.main(["--scenarios", "{}", "--run-dir", str(tmp_path)]) == 2
    assert "JSON list" in capsys.readouterr().err
