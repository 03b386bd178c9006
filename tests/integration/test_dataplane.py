"""kmesh_lab.dataplane on a real lab of its own: a `kmtest-*` netns lab (kmesh_lab.lab), the
agent attached to its cgroup with its own pins and metrics port, HTTP servers in the server
pods. Every plane is selected in turn (twice: the second must change nothing), the service
must answer from the client pod through the plane, the described state must be exactly that
plane; reset leaves no rule, sidecar, acceleration or suite file. Everything is removed in
`finally` (processes by their PID files, namespaces and cgroups by prefix, the agent's pins).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmesh_lab import daemon, dataplane, lab, services

from .kmnode_lab import _can_run

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
CIDR = "10.244.250.0/24"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab_(tmp_path: Path) -> Iterator[dataplane.Lab]:
    reason = _can_run()
    if reason:
        pytest.skip(reason)
    prefix = f"kmtest-{secrets.token_hex(3)}"
    state = Path(f"/run/{prefix}")
    bpffs = Path(f"/sys/fs/bpf/{prefix}")
    agent_dir, svc_dir = state / "manifests", tmp_path / "services"
    port = _free_port()
    spec = lab.build_spec(prefix, CIDR, 1, 2, 0, 0, state)
    try:
        lab.up(spec)
        st = lab.load_state(state)
        for pod in ("server-0", "server-1"):
            argv = [sys.executable, "-m", "http.server", "80", "--bind", "0.0.0.0"]
            daemon.start(state, f"http-{pod}", argv, pod=pod, ready_port=80, timeout=30)
        servers = [p["address"] for p in st["pods"].values() if p["role"] == "server"]
        services.write(agent_dir, "base", services.manifests(0, 1, servers, 1, 80)[0])
        services.write(svc_dir, "suite_dptest", services.manifests(100, 3, servers, 1, 80)[0])
        argv = [str(REPO / ".venv/bin/kmesh-node"), "run", "--source", f"manifests:{agent_dir}"]
        argv += ["--cgroup", st["cgroup_root"], "--bpffs", str(bpffs)]
        argv += ["--metrics", f"127.0.0.1:{port}"]
        daemon.start(state, dataplane.AGENT, argv, ready_port=port, timeout=180)
        yield dataplane.Lab(
            state, svc_dir, agent_dir, "suite_dptest", str(bpffs), f"127.0.0.1:{port}"
        )
    finally:
        lab.down(prefix, state)  # the agent, HTTP servers, sidecars; namespaces; cgroups
        if bpffs.exists():
            subprocess.run(
                [str(REPO / ".venv/bin/kmesh-node"), "uninstall", "--bpffs", str(bpffs)],
                capture_output=True,
            )
            shutil.rmtree(bpffs, ignore_errors=True)


def get(lab_: dataplane.Lab, url: str) -> str:
    """HTTP status of one GET from the client pod (its netns and cgroup, like a load)."""
    argv = [str(REPO / "tools/podexec.sh"), "client-0", "--", "curl", "-s", "-o", "/dev/null"]
    argv += ["-w", "%{http_code}", "--max-time", "5", url]
    env = {**os.environ, "KMESH_LAB_STATE": str(lab_.state_dir)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30).stdout


def test_every_plane_serves_and_reset_leaves_nothing(lab_: dataplane.Lab) -> None:
    planes = [p for p in dataplane.PLANES if not dataplane.prerequisite_missing(lab_, p)]
    assert {"pod_ip", "kube_proxy_iptables_nft", "kmesh_node"} <= set(planes)
    # legacy iptables last: its nat table stays registered in the node namespace
    planes.sort(key=lambda p: p == "kube_proxy_iptables_legacy")
    svc = dataplane.listing(lab_.services_dir, lab_.prefix)[0]
    for plane in planes:
        first = dataplane.select(lab_, plane)
        assert dataplane.check(first["state"], plane) == []
        again = dataplane.select(lab_, plane)
        assert again["changed"] is False, (plane, again["steps"])
        url = f"http://{dataplane.target(plane, svc)}/"
        assert get(lab_, url) == "200", (plane, url)
        if plane != "pod_ip":
            assert url.startswith(f"http://{svc['vip']}:")
    out = dataplane.reset(lab_)
    st = out["state"]
    assert st["kube_proxy"]["rules_in_kernel"] == 0
    assert not st["sidecar"]["running"] and not st["sidecar"].get("capture_rules")
    assert not st["acceleration"] and not st["agent"]["suite_files"]
    assert st["agent"]["services"] == 1  # its own base service only
    # with no plane serving it, the VIP answers nothing (the node has no route for it)
    assert get(lab_, f"http://{svc['vip']}:{svc['port']}/") != "200"
