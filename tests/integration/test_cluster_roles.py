"""The cluster roles' task logic, run for real against stand-ins for docker, kind, kubectl,
istioctl and helm (tests/fakecluster.py): no container engine or cluster runs here.

What this proves: every command the roles run is one the stand-ins know (same arguments the
real tools take), every object and config they hand over validates, the order works
(namespaces before objects, Istio CRDs before policy, istiod before Kmesh), and a second run
of each play reports changed=0 - the `changed_when` rules read the tools' real wording.
What it cannot prove: that the real cluster behaves (README "Running on a real cluster").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ["docker", "kind", "kubectl", "istioctl", "helm"]


@pytest.fixture
def fake(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        wrapper = bin_dir / tool
        script = ROOT / "tests" / "fakecluster.py"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" {tool} "$@"\n')
        wrapper.chmod(0o755)
    state_dir = tmp_path / "state"
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        FAKE_CLUSTER_STATE=str(tmp_path),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
    )
    extra = ["-e", f"lab_state_dir={state_dir}", "-e", f"kind_cluster_config_dir={state_dir}/kind"]

    def play(playbook: str, *args: str) -> tuple[int, int, str]:
        proc = subprocess.run(
            [
                str(ROOT / ".venv/bin/ansible-playbook"),
                "-i",
                "inventories/kind",
                playbook,
                *extra,
                *args,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = proc.stdout + proc.stderr
        m = re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)", out)
        return proc.returncode, int(m.group(1)) if m else -1, out

    def state() -> dict:
        return json.loads((tmp_path / "state.json").read_text())

    return play, state


def objects(state: dict, kind: str, ns: str | None = None) -> list[str]:
    prefix = f"{kind}/{ns}/" if ns is not None else f"{kind}/"
    return sorted(k for k in state["objects"] if k.startswith(prefix))


@pytest.mark.timeout(1200)
def test_kind_cluster_with_each_dataplane_is_idempotent(fake):
    play, state = fake

    # 1. kind + the kmesh_node DaemonSet + fortio + 1,001 bulk services (3 batches of 500)
    bulk = ("-e", "cluster_workloads_bulk_services=1001")
    rc, changed, out = play("playbooks/cluster.yml", *bulk)
    assert rc == 0, out[-4000:]
    assert changed > 0
    s = state()
    assert s["clusters"] == ["kmesh-lab"]
    assert s["kind_config"]["networking"]["kubeProxyMode"] == "iptables"
    assert len(s["kind_config"]["nodes"]) == 3
    assert s["images"] == ["localhost/kmesh-lab/kmesh-node:0.1.0"]
    assert s["loaded"] == ["localhost/kmesh-lab/kmesh-node:0.1.0"]
    assert objects(s, "DaemonSet") == ["DaemonSet/kmesh-lab-system/kmesh-node"]
    assert objects(s, "ClusterRole") == ["ClusterRole//kmesh-node"]
    assert objects(s, "Deployment") == [
        "Deployment/lab-client/fortio-client",
        "Deployment/lab-server/fortio-server",
    ]
    assert len(objects(s, "Service", "lab")) == 1001
    assert len(objects(s, "EndpointSlice", "lab")) == 1001
    applies = [c for c in s["calls"] if c[0] == "kubectl" and "apply" in c and "batch-" in c[-1]]
    assert [Path(c[-1]).name for c in applies] == [
        "batch-00000.yaml",
        "batch-00001.yaml",
        "batch-00002.yaml",
    ]
    slice0 = s["objects"]["EndpointSlice/lab/svc-00000-1"]["doc"]
    assert slice0["endpoints"][0]["addresses"] == ["10.244.1.5"]  # a fortio server pod

    rc, changed, out = play("playbooks/cluster.yml", *bulk)
    assert (rc, changed) == (0, 0), out[-4000:]
    assert state()["images"] == ["localhost/kmesh-lab/kmesh-node:0.1.0"]  # not rebuilt

    # 2. the same cluster with Istio sidecars, mTLS and the thesis' policy
    rc, changed, out = play("playbooks/cluster.yml", "-e", "lab_cluster_dataplane=istio")
    assert rc == 0, out[-4000:]
    s = state()
    assert s["istio_operator"]["spec"]["tag"] == "1.30.4"
    assert s["namespaces"]["lab-client"] == {"istio-injection": "enabled"}
    assert s["namespaces"]["lab-server"] == {"istio-injection": "enabled"}
    assert sorted(s["restarts"]) == ["lab-client", "lab-server"]  # pods get their sidecar
    assert objects(s, "PeerAuthentication") == ["PeerAuthentication/lab-server/kmesh-lab-strict"]
    assert objects(s, "AuthorizationPolicy") == [
        "AuthorizationPolicy/lab-server/kmesh-lab-client-get"
    ]
    assert objects(s, "VirtualService") == ["VirtualService/lab-server/fortio-server"]
    rc, changed, out = play("playbooks/cluster.yml", "-e", "lab_cluster_dataplane=istio")
    assert (rc, changed) == (0, 0), out[-4000:]

    # 3. upstream Kmesh: istiod alone (ambient on), injection off, the chart at its pin
    rc, changed, out = play("playbooks/cluster.yml", "-e", "lab_cluster_dataplane=kmesh_upstream")
    assert rc == 0, out[-4000:]
    s = state()
    assert s["istio_operator"]["spec"]["values"]["pilot"]["env"]["PILOT_ENABLE_AMBIENT"] == "true"
    assert s["namespaces"]["lab-client"] == {"istio.io/dataplane-mode": "Kmesh"}
    assert s["releases"]["kmesh-system/kmesh"]["chart"] == "kmesh-helm-v1.1.0"
    rc, changed, out = play("playbooks/cluster.yml", "-e", "lab_cluster_dataplane=kmesh_upstream")
    assert (rc, changed) == (0, 0), out[-4000:]

    # 4. down (a second run finds nothing to delete)
    rc, changed, out = play("playbooks/cluster_down.yml")
    assert (rc, state()["clusters"]) == (0, []), out[-4000:]
    assert changed > 0
    rc, changed, out = play("playbooks/cluster_down.yml")
    assert (rc, changed) == (0, 0), out[-4000:]


@pytest.mark.timeout(300)
def test_kube_proxy_off_points_the_agent_at_the_control_plane(fake):
    play, state = fake
    rc, _, out = play(
        "playbooks/cluster.yml",
        "-e",
        "kind_cluster_kube_proxy_mode=none",
        "--tags",
        "always,cluster,kmesh_node",
    )
    assert rc == 0, out[-4000:]
    s = state()
    assert s["kind_config"]["networking"]["kubeProxyMode"] == "none"
    ds = s["objects"]["DaemonSet/kmesh-lab-system/kmesh-node"]["doc"]
    env = {e["name"]: e["value"] for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {
        "KUBERNETES_SERVICE_HOST": "kmesh-lab-control-plane",
        "KUBERNETES_SERVICE_PORT": "6443",
    }
    # A changed cluster config is refused, not silently ignored.
    rc, _, out = play(
        "playbooks/cluster.yml",
        "-e",
        "kind_cluster_kube_proxy_mode=nftables",
        "--tags",
        "always,cluster",
    )
    assert rc != 0
    assert "kind cannot change nodes" in out and "cluster_down.yml" in out


@pytest.mark.timeout(300)
def test_kmesh_without_istiod_is_refused_with_the_fix(fake, tmp_path):
    play, _ = fake
    # A cluster without Istio (only its kubeconfig matters to the stand-ins' kubectl).
    kubeconfig = tmp_path / "state" / "kind" / "kubeconfig"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("# fake\n")
    rc, _, out = play(
        "playbooks/cluster.yml",
        "-e",
        "lab_cluster_dataplane=kmesh_upstream",
        "--tags",
        "always,kmesh_upstream",
    )
    assert rc != 0
    assert "istio_dataplane=none first" in out
