"""tools/podexec.sh on Kubernetes backends (kmesh_lab/kubeexec.py): `kubectl exec` into the
pod, and tools/fortio.sh run with fortio in the pod and its JSON written here. A fake
kubectl on PATH records its arguments and answers like fortio would in the pod."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kmesh_lab import kubeexec

ROOT = Path(__file__).resolve().parents[2]

FORTIO_JSON = {
    "ActualQPS": 100.0,
    "ActualDuration": 1_000_000_000,
    "NumThreads": 2,
    "DurationHistogram": {
        "Count": 100,
        "Min": 0.001,
        "Max": 0.004,
        "Avg": 0.002,
        "StdDev": 0.0005,
        "Percentiles": [{"Percentile": 50, "Value": 0.002}, {"Percentile": 99, "Value": 0.004}],
    },
    "RetCodes": {"200": 100},
}

FAKE_KUBECTL = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$KUBECTL_LOG"
args=("$@")
for i in "${!args[@]}"; do
  if [[ ${args[$i]} == -- && ${args[$((i + 1))]} == fortio ]]; then
    echo "fortio log line on stderr" >&2
    cat "$KUBECTL_ANSWER"
    exit 0
  fi
done
echo "ran: $*"
"""


@pytest.fixture
def fake_kubectl(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps(FORTIO_JSON))
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        KUBECTL_LOG=str(tmp_path / "kubectl.log"),
        KUBECTL_ANSWER=str(answer),
        KMESH_LAB_BACKEND="kind",
        KMESH_LAB_KUBECONFIG="/run/kmesh-lab/kind/kubeconfig",
    )
    return env, tmp_path / "kubectl.log"


def test_target_and_exec_argv():
    assert kubeexec.target("deploy/fortio-client", {}) == ("lab-client", "deploy/fortio-client")
    assert kubeexec.target("lab-server:fortio-server-0", {}) == ("lab-server", "fortio-server-0")
    assert kubeexec.target("p", {"KMESH_LAB_NAMESPACE": "x"}) == ("x", "p")
    with pytest.raises(ValueError, match="NAMESPACE:POD"):
        kubeexec.target(":p", {})
    argv = kubeexec.kubectl_exec("ns", "p", ["true"], {"KUBECONFIG": "/k"})
    assert argv == [
        "kubectl",
        "--kubeconfig",
        "/k",
        "exec",
        "-n",
        "ns",
        "p",
        "-c",
        "fortio",
        "--",
        "true",
    ]


def test_json_target_moves_the_file_to_stdout():
    args, path = kubeexec.json_target(["load", "-c", "2", "-json", "/tmp/x.json", "http://s/"])
    assert (args, path) == (["load", "-json", "-", "-c", "2", "http://s/"], "/tmp/x.json")
    args, path = kubeexec.json_target(["load", "-json=/tmp/y.json", "http://s/"])
    assert (args, path) == (["load", "-json", "-", "http://s/"], "/tmp/y.json")
    assert kubeexec.json_target(["load", "http://s/"]) == (["load", "http://s/"], None)
    with pytest.raises(ValueError, match="-json needs a value"):
        kubeexec.json_target(["load", "-json"])


def test_podexec_runs_a_command_through_kubectl(fake_kubectl):
    env, log = fake_kubectl
    out = subprocess.run(
        [ROOT / "tools/podexec.sh", "deploy/fortio-client", "--", "curl", "-s", "http://x/"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "exec -n lab-client deploy/fortio-client -c fortio -- curl -s http://x/" in out.stdout
    assert log.read_text().startswith("--kubeconfig /run/kmesh-lab/kind/kubeconfig exec")


def test_fortio_wrapper_runs_fortio_in_the_pod(fake_kubectl, tmp_path):
    env, log = fake_kubectl
    out_json = tmp_path / "load.json"
    proc = subprocess.run(
        [
            ROOT / "tools/podexec.sh",
            "deploy/fortio-client",
            "--",
            ROOT / "tools/fortio.sh",
            "load",
            "-c",
            "2",
            "-t",
            "1s",
            "-qps",
            "0",
            "-json",
            str(out_json),
            "http://fortio-server.lab-server/get",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out_json.read_text())
    assert data["Runner"] == "fortio"
    assert data["DurationHistogram"]["Count"] == 100
    (call,) = log.read_text().splitlines()
    # fortio runs in the client pod, printing its JSON on stdout; the flags pass through.
    assert "exec -n lab-client deploy/fortio-client -c fortio -- fortio load -json - " in call
    assert call.endswith("-c 2 -t 1s -qps 0 http://fortio-server.lab-server/get")


def test_netns_backend_is_unchanged(tmp_path):
    env = dict(os.environ, KMESH_LAB_BACKEND="netns", KMESH_LAB_STATE=str(tmp_path))
    proc = subprocess.run(
        [ROOT / "tools/podexec.sh", "kmlab-client-0", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
    )
    # The netns path reads lab.json (absent here) and says so; kubectl is never involved.
    assert proc.returncode != 0
    assert "kubectl" not in proc.stderr
