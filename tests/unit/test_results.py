"""kmesh_lab.results: the results contract, atomic merging, resume, CLI."""

from __future__ import annotations

import json
import multiprocessing
import platform
import re
from pathlib import Path

import pytest

from kmesh_lab import published, results

ENV = {"hostname": "test", "kernel": {"release": "x"}}  # skip probing the host in most tests


def rec(scenario: str, samples: list, **kw) -> dict:
    return results.make_record("suite_test", scenario, {"c": 1}, samples, env=ENV, **kw)


# ------------------------------------------------------------------ statistics


def test_summarize() -> None:
    assert results.summarize([3, 1, 2, 10]) == {
        "n": 4,
        "min": 1,
        "median": 2.5,
        "max": 10,
        "mean": 4.0,
    }
    assert results.summarize([]) == {"n": 0, "min": None, "median": None, "max": None, "mean": None}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "3", None])
def test_summarize_rejects_non_numbers(bad: object) -> None:
    with pytest.raises(results.ResultsError, match="finite numbers"):
        results.summarize([1, bad])  # type: ignore[list-item]


def test_summarize_samples_per_metric() -> None:
    samples = [
        {"rep": 1, "qps": 100.0, "runner": "wrk", "p99_ms": 2.0},
        {"rep": 2, "qps": 300.0, "runner": "wrk"},
    ]
    summary = results.summarize_samples(samples)
    assert set(summary) == {"rep", "qps", "p99_ms"}
    assert summary["qps"]["median"] == 200.0
    assert summary["p99_ms"]["n"] == 1
    assert results.summarize_samples([1.0, 3.0])["value"]["mean"] == 2.0
    with pytest.raises(results.ResultsError, match="all numbers or all JSON objects"):
        results.summarize_samples([1.0, {"a": 1}])


# ------------------------------------------------------------------ records


def test_record_has_the_contract_fields_and_published_from_yaml() -> None:
    r = rec("2_1.threads=100", [{"ebpf_pct": 1.0}], experiments=["cpu.2_1"])
    for key in results.RECORD_KEYS:
        assert key in r
    expected = [f.id for f in published.load().by_experiment("cpu.2_1")]
    assert [f["id"] for f in r["published"]] == expected
    by_id = {f["id"]: f for f in r["published"]}
    assert (
        by_id["cpu.2_1.ebpf_cpu.threads_100"]["value"]
        == published.load().figure("cpu.2_1.ebpf_cpu.threads_100").value
    )
    assert r["summary"]["ebpf_pct"]["n"] == 1


def test_unknown_experiment_is_an_error() -> None:
    with pytest.raises(results.ResultsError, match="unknown experiment id"):
        rec("x", [1.0], experiments=["cpu.42"])


@pytest.mark.parametrize("name", ["", "a b", "../x", "x/y", ".hidden"])
def test_bad_scenario_names(name: str) -> None:
    with pytest.raises(results.ResultsError, match="not a usable name"):
        rec(name, [1.0])


# ------------------------------------------------------------------ files


def test_write_merges_and_replaces(tmp_path: Path) -> None:
    run = tmp_path / "run1"
    path = results.write_records(run, "suite_test", [rec("a", [1.0]), rec("b", [2.0])])
    assert path == run / "suite_test.json"
    results.write_records(run, "suite_test", [rec("a", [5.0]), rec("c", [3.0])])
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 1
    assert doc["run_id"] == "run1"
    assert [r["scenario"] for r in doc["records"]] == ["a", "b", "c"]
    assert doc["records"][0]["samples"] == [5.0]
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by whoever reads the run


def test_interrupted_write_leaves_the_old_file(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    path = results.write_records(run, "suite_test", [rec("a", [1.0])])
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(results.json, "dump", boom)
    with pytest.raises(KeyboardInterrupt):
        results.write_records(run, "suite_test", [rec("b", [2.0])])
    assert path.read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_resume_sees_done_scenarios(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert results.done_scenarios(run, "suite_test") == set()
    results.append_samples(run, "suite_test", "a", [1.0], {"c": 1}, expected_samples=3)
    results.append_samples(run, "suite_test", "b", [1.0], {"c": 2})
    assert results.done_scenarios(run, "suite_test") == {"b"}
    results.append_samples(run, "suite_test", "a", [2.0, 3.0], {"c": 1})
    assert results.done_scenarios(run, "suite_test") == {"a", "b"}
    (a,) = [r for r in results.read_records(run, "suite_test") if r["scenario"] == "a"]
    assert a["summary"]["value"] == {"n": 3, "min": 1.0, "median": 2.0, "max": 3.0, "mean": 2.0}


def test_append_with_other_params_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    results.append_samples(run, "suite_test", "a", [1.0], {"c": 1})
    with pytest.raises(results.ResultsError, match="--replace"):
        results.append_samples(run, "suite_test", "a", [1.0], {"c": 2})


def test_broken_file_is_reported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "suite_test.json").write_text('{"records": [')
    with pytest.raises(results.ResultsError, match="Move it aside"):
        results.done_scenarios(run, "suite_test")
    (run / "suite_test.json").write_text(
        json.dumps({"schema_version": 1, "records": [{"suite": "suite_test"}]})
    )
    with pytest.raises(results.ResultsError, match="lacks scenario"):
        results.read_records(run, "suite_test")


def _append_many(run: str, worker: int) -> None:
    for i in range(5):
        results.append_samples(run, "suite_test", "shared", [{"w": worker, "i": i}], {})


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    run = str(tmp_path / "run")
    results.append_samples(run, "suite_test", "shared", [{"w": -1, "i": -1}], {})
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(run, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (shared,) = results.read_records(run, "suite_test")
    assert len(shared["samples"]) == 21


# ------------------------------------------------------------------ environment


def test_environment_describes_this_host() -> None:
    env = results.environment()
    assert env["kernel"]["release"] == platform.release()
    assert env["cpu"]["cores"] >= 1
    assert env["memory_bytes"] > 0
    assert env["cgroup_mode"] in ("v1", "v2", "hybrid", "unknown")
    assert "iptables" in env["tools"]
    assert "source" in env["kernel_config"]


@pytest.mark.parametrize(
    ("mounts", "mode"),
    [
        ("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n", "v2"),
        (
            "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
            "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
            "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n",
            "hybrid",
        ),
        ("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n", "v1"),
        ("proc /proc proc rw 0 0\n", "unknown"),
    ],
)
def test_cgroup_mode(mounts: str, mode: str) -> None:
    assert results.cgroup_mode(mounts) == mode


# ------------------------------------------------------------------ CLI


FORTIO_JSON = {
    "ActualQPS": 100.0,
    "ActualDuration": 2_000_000_000,
    "NumThreads": 4,
    "RequestedQPS": "max",
    "DurationHistogram": {
        "Count": 200,
        "Min": 0.001,
        "Max": 0.004,
        "Avg": 0.002,
        "Percentiles": [{"Percentile": 50, "Value": 0.002}, {"Percentile": 99, "Value": 0.0035}],
    },
    "RetCodes": {"200": 200},
    "SocketCount": 200,
}


def test_cli_record_is_done_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "results" / "r1"
    load = tmp_path / "load.json"
    load.write_text(json.dumps(FORTIO_JSON))
    sample_file = tmp_path / "s.json"
    sample_file.write_text(json.dumps([{"ebpf_pct": 1.5}, {"ebpf_pct": 2.5}]))
    base = ["--run-dir", str(run), "--suite", "suite_cpu"]
    assert results.main(["is-done", *base, "--scenario", "1_1"]) == 1
    rc = results.main(
        [
            "record",
            *base,
            "--scenario",
            "1_1",
            "--params",
            '{"limit_m": 1000}',
            "--lab",
            '{"backend": "netns", "profile": "quick"}',
            "--experiment",
            "cpu.1_1",
            "--repetitions",
            "4",
            "--sample",
            '{"ebpf_pct": 0.5}',
            "--sample-file",
            str(sample_file),
        ]
    )
    assert rc == 0
    assert "3/4 samples" in capsys.readouterr().err
    assert results.main(["is-done", *base, "--scenario", "1_1"]) == 1
    assert results.main(["record", *base, "--scenario", "1_1", "--load-json", str(load)]) == 0
    assert results.main(["is-done", *base, "--scenario", "1_1"]) == 0
    capsys.readouterr()
    assert results.main(["done", *base]) == 0
    assert capsys.readouterr().out.split() == ["1_1"]
    (r,) = results.read_records(run, "suite_cpu")
    assert r["params"] == {"limit_m": 1000}
    assert r["environment"]["lab"] == {"backend": "netns", "profile": "quick"}
    assert r["summary"]["ebpf_pct"]["median"] == 1.5
    assert r["samples"][-1]["p99_ms"] == pytest.approx(3.5)
    assert {f["experiment"] for f in r["published"]} == {"cpu.1_1"}
    assert results.main(["show", *base]) == 0
    assert "1_1\tdone\tn=4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--params", "{bad"], "--params is not valid JSON"),
        (["--params", "[1]"], "--params must be a JSON object"),
        ([], "at least one --sample"),
        (["--sample", '"text"'], "all numbers or all JSON objects"),
        (["--load-json", "/nonexistent.json"], "cannot read"),
        (["--sample", "1", "--experiment", "nope.1"], "unknown experiment"),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    rc = results.main(
        ["record", "--run-dir", str(tmp_path), "--suite", "s", "--scenario", "x", *extra]
    )
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def test_cli_published_and_run_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert results.main(["published", "--experiment", "memory.1"]) == 0
    figs = json.loads(capsys.readouterr().out)
    assert figs and all(f["experiment"] == "memory.1" for f in figs)
    assert results.main(["new-run-id"]) == 0
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{4}", capsys.readouterr().out.strip())
