"""kmesh_lab.servicestep: one step of the memory/scaling suites against a fake agent whose
metrics count the Services in the watched directory (no root, no kernel maps needed)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kmesh_lab import agentsample, lab, results, services, servicestep, suiteplan

from .test_agentsample import kernel_report


class FakeAgent:
    """Metrics whose kmesh_node_services is what the manifests directory holds right now."""

    def __init__(self, manifests: Path) -> None:
        def count() -> int:
            return sum(
                servicestep.services_in(manifests, p.stem)
                for p in manifests.glob("*.yaml")
                if not p.name.startswith(".")
            )

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"kmesh_node_services {count()}.0\nkmesh_node_map_resizes_total 2.0\n"
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    state = tmp_path / "state"
    manifests = state / "manifests"
    manifests.mkdir(parents=True)
    (state / "lab.json").write_text(
        json.dumps({"pods": {"server-0": {"role": "server", "address": "10.246.0.3"}}})
    )
    docs, _ = services.manifests(0, 1, ["10.246.0.3"], 1, 80)
    services.write(manifests, "base", docs)  # the agent's own service
    pidfile = tmp_path / "agent.pid"
    pidfile.write_text(f"{os.getpid()} {lab.process_start_time(os.getpid())}\n")
    agent = FakeAgent(manifests)
    probes: list[list[str]] = []

    class DoneProbe:
        """What start_probe returns: a finished process with the probe's result."""

        def __init__(self, targets: list[str]) -> None:
            self.result = {
                "targets": len(targets),
                "answered": len(targets),
                "pending": [],
                "p50_s": 0.1,
                "max_s": 0.2,
                "first_attempt_s": 0.05,
            }

        def poll(self) -> int:
            return 0

    def fake_start(_state: Path, _pod: str, targets: list[str], _timeout: float) -> Any:
        probes.append(targets)
        return DoneProbe(targets)

    monkeypatch.setattr(servicestep, "start_probe", fake_start)
    monkeypatch.setattr(servicestep, "go", lambda _proc, _since: None)
    monkeypatch.setattr(servicestep, "finish_probe", lambda proc, _pod, _t: proc.result)
    monkeypatch.setattr(agentsample, "top", lambda _agent, _interval=0.1: kernel_report())
    lab_args = [
        "--state-dir",
        str(state),
        "--manifests-dir",
        str(manifests),
        "--bpffs",
        "/sys/fs/bpf/none",
        "--metrics",
        agent.address,
        "--pid-file",
        str(pidfile),
        "--sync-timeout",
        "5",
    ]
    yield {"lab": lab_args, "manifests": manifests, "run": tmp_path / "run", "probes": probes}
    agent.server.shutdown()
    agent.server.server_close()


def _step(
    env: dict[str, Any],
    step: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    prefix: str = "suite_scaling",
) -> dict[str, Any]:
    argv = [
        "step",
        "--step",
        json.dumps(step),
        "--prefix",
        prefix,
        "--probe-sample",
        "4",
        "--idle-window",
        "0.05",
        "--run-dir",
        str(env["run"]),
        "--suite",
        "suite_scaling",
        "--repetitions",
        "2",
        *env["lab"],
    ]
    assert servicestep.main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_a_scaling_cycle_records_one_sample_per_step(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = suiteplan.scaling(batch=20, batches=2, cycles=1, start=40000)
    outs = [_step(env, st, capsys) for st in plan]
    assert all(o["measured"] for o in outs)
    assert [o["sample"]["services"] for o in outs] == [21, 41, 1, 21, 41]  # + the base one
    assert env["probes"][0][0] == "10.96.156.74:80"  # the batch's first VIP, spread over it
    assert len(env["probes"]) == 4 and all(len(p) == 4 for p in env["probes"])
    first = outs[0]["sample"]
    assert first["answer_max_s"] == 0.2 and first["resizes"] == 2
    assert first["agent_rss_bytes"] > 0 and first["agent_change_cpu_s"] >= 0
    assert "answer_max_s" not in outs[2]["sample"]  # a delete probes nothing
    records = {r["scenario"]: r for r in results.read_records(env["run"], "suite_scaling")}
    assert set(records) == {s["scenario"] for s in plan}
    assert records["down.services=0"]["experiments"] == ["scaling.setup", "scaling.log"]
    assert records["up.services=40"]["expected_samples"] == 2


def test_a_resumed_step_changes_the_lab_without_measuring_again(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    step = suiteplan.scaling(batch=5, batches=1, cycles=1, start=40000)[0]
    assert _step(env, step, capsys)["measured"] is True
    servicestep.remove_files(env["manifests"], ["suite_scaling-000"])
    again = _step(env, step, capsys)  # repetition 1 is already recorded
    assert again["measured"] is False
    assert (env["manifests"] / "suite_scaling-000.yaml").is_file()
    (record,) = results.read_records(env["run"], "suite_scaling")
    assert len(record["samples"]) == 1


def test_cleanup_removes_only_the_suites_files(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _step(env, suiteplan.memory([30], 1, 1, 20000)[0], capsys, prefix="suite_memory")
    assert servicestep.main(["cleanup", "--prefix", "suite_memory", *env["lab"]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"removed": ["suite_memory"], "services": 1, "waited_s": out["waited_s"]}
    assert sorted(p.name for p in env["manifests"].iterdir()) == ["base.yaml"]
    assert servicestep.main(["services", "--prefix", "suite_memory", *env["lab"]]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "services": 1,
        "base_services": 1,
        "suite_files": [],
    }


def test_helpers(tmp_path: Path) -> None:
    assert servicestep.spread(list(range(10)), 3) == [0, 4, 9]
    assert servicestep.spread(list(range(3)), 10) == [0, 1, 2]
    assert servicestep.spread([1, 2], 0) == []
    assert servicestep.loadgen_seconds("1m30s") == 90
    assert servicestep.loadgen_seconds("500ms") == 0.5
    with pytest.raises(servicestep.StepError, match="like 5s"):
        servicestep.loadgen_seconds("5 seconds")
    docs, _ = services.manifests(7, 2, ["10.0.0.1"], 1, 8080)
    services.write(tmp_path, "a", docs)
    assert servicestep.services_in(tmp_path, "a") == 2
    assert servicestep.services_in(tmp_path, "missing") == 0
    assert servicestep.first_vip(tmp_path) == (services.vip(7), 8080)
    with pytest.raises(servicestep.StepError, match="no Service"):
        servicestep.first_vip(tmp_path / "empty")


def test_every_suites_leftovers_are_not_the_baseline_and_go_with_prefix_suite_(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    docs, _ = services.manifests(40000, 5, ["10.246.0.3"], 1, 80)
    services.write(env["manifests"], "suite_scaling-000", docs)  # an interrupted other suite
    assert servicestep.base_services(env["manifests"]) == 1
    assert servicestep.main(["cleanup", "--prefix", "suite_", *env["lab"]]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == ["suite_scaling-000"]
    assert servicestep.main(["cleanup", "--prefix", "mine", *env["lab"]]) == 1
    assert "must be named suite_*" in capsys.readouterr().err
