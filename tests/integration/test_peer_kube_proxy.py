"""kube-proxy's rules on the real kernel, without the kmesh_node agent.

Each test builds its own small lab (`kmtest-<random>-*`: a node namespace routing to one
client and three server pods over veths, as kmesh_lab.netns builds the real lab), writes
Service/EndpointSlice manifests, applies the rules with the peer's CLI in the node namespace
and connects from the client pod to the ClusterIP. Everything is removed in `finally`;
only processes the test started are stopped, by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmesh_lab import netns, services

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]

REPO = Path(__file__).resolve().parents[2]
CIDR = "10.251.7.0/24"
PORT = 80
SERVER = """
import socket, sys
name = sys.argv[1].encode()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80))
s.listen(512)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(name)
    c.close()
"""
CLIENT = """
import collections, json, socket, sys
vip, n = sys.argv[1], int(sys.argv[2])
seen = collections.Counter()
for _ in range(n):
    with socket.create_connection((vip, 80), timeout=2) as c:
        seen[c.recv(64).decode() or "empty"] += 1
print(json.dumps(seen))
"""


@dataclass
class MiniLab:
    prefix: str
    node: str
    client: str
    servers: dict[str, str]  # pod name -> address
    manifests: Path
    state: Path

    def kp(self, *args: str, check: bool = True) -> dict:
        cmd = [sys.executable, "-m", "kmesh_lab.kube_proxy_apply", *args]
        cmd += ["--netns", self.node, "--state-dir", str(self.state)]
        if args[0] == "apply":
            cmd += ["--manifests-dir", str(self.manifests), "--cluster-cidr", CIDR]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout else {}

    def connect(self, vip: str, n: int) -> dict[str, int]:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, "-c", CLIENT, vip, str(n)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    def write_services(self, count: int, endpoints: int) -> list[dict]:
        docs, listing = services.manifests(0, count, list(self.servers.values()), endpoints, PORT)
        services.write(self.manifests, "svc", docs)
        return listing

    def save(self, tool: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.node, tool], capture_output=True, text=True, check=True
        ).stdout


@contextlib.contextmanager
def mini_lab(tmp_path: Path) -> Iterator[MiniLab]:
    prefix = f"kmtest-{secrets.token_hex(3)}"
    node = f"{prefix}-node"
    pods = netns.pod_addresses(CIDR, ["client-0", "server-0", "server-1", "server-2"])
    gw = netns.gateway(CIDR)
    procs: list[subprocess.Popen[str]] = []
    try:
        netns.ensure_node(node)
        for pod in pods:
            netns.ensure_pod(node, f"{prefix}-{pod.name}", f"v-{pod.name}", pod, gw)
        for pod in pods[1:]:
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    f"{prefix}-{pod.name}",
                    sys.executable,
                    "-c",
                    SERVER,
                    pod.name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield MiniLab(
            prefix,
            node,
            f"{prefix}-client-0",
            {p.name: p.address for p in pods[1:]},
            tmp_path / "manifests",
            tmp_path / "state",
        )
    finally:
        for proc in procs:
            proc.kill()  # by PID: only what this test started
            proc.wait(timeout=10)
        for name in sorted(netns.namespaces()):
            if name.startswith(f"{prefix}-"):
                netns.delete_namespace(name)
        shutil.rmtree(tmp_path / "state", ignore_errors=True)


PLANES = [("iptables", "nft"), ("iptables", "legacy"), ("nftables", "nft")]


def _chi2(seen: dict[str, int], n: int, k: int) -> float:
    expected = n / k
    return sum(
        (seen.get(s, 0) - expected) ** 2 / expected for s in [f"server-{i}" for i in range(k)]
    )


@pytest.mark.parametrize(("mode", "backend"), PLANES)
def test_clusterip_reaches_endpoints_with_kube_proxy_spread(
    tmp_path: Path, mode: str, backend: str
) -> None:
    with mini_lab(tmp_path) as lab:
        listing = lab.write_services(count=1, endpoints=3)
        vip = listing[0]["vip"]
        # No rules yet: the VIP has no route in the node namespace, nothing answers.
        with pytest.raises(AssertionError):
            lab.connect(vip, 1)
        result = lab.kp("apply", "--mode", mode, "--backend", backend)
        assert result["changed"] is True
        n = 900
        seen = lab.connect(vip, n)
        assert sum(seen.values()) == n and set(seen) == set(lab.servers), seen
        # Equal thirds from 1/3, 1/2, 1 (statistic) or numgen mod 3; chi-square with 2
        # degrees of freedom stays under 13.8 with probability 0.999.
        assert _chi2(seen, n, 3) < 13.8, seen


@pytest.mark.parametrize(("mode", "backend"), PLANES)
def test_apply_is_idempotent_follows_changes_and_removes_cleanly(
    tmp_path: Path, mode: str, backend: str
) -> None:
    with mini_lab(tmp_path) as lab:
        listing = lab.write_services(count=5, endpoints=3)
        first = lab.kp("apply", "--mode", mode, "--backend", backend)
        assert first["changed"] is True and first["service_ports"] == 5
        again = lab.kp("apply", "--mode", mode, "--backend", backend)
        assert again["changed"] is False
        assert again["counts"] == first["counts"]
        # Fewer endpoints: re-applied, stale endpoint chains gone, traffic still flows.
        lab.write_services(count=5, endpoints=2)
        fewer = lab.kp("apply", "--mode", mode, "--backend", backend)
        assert fewer["changed"] is True
        if mode == "iptables":
            assert fewer["counts"]["kube_nat_rules"] == 5 + 5 * (3 * 2 + 2)
            assert fewer["counts"]["kube_chains"] < first["counts"]["kube_chains"]
        else:
            assert fewer["counts"]["chains"] == first["counts"]["chains"] - 5
        seen = lab.connect(listing[4]["vip"], 20)
        assert sum(seen.values()) == 20 and len(seen) == 2, seen

        gone = lab.kp("remove")
        assert gone["changed"] is True
        assert lab.kp("remove")["changed"] is False
        save = "iptables-legacy-save" if backend == "legacy" else "iptables-nft-save"
        assert "KUBE-" not in lab.save(save)
        ruleset = subprocess.run(
            ["ip", "netns", "exec", lab.node, "nft", "list", "ruleset"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "kube-proxy" not in ruleset and "KUBE-" not in ruleset
        if backend == "legacy":
            # Honest about what stays: the empty legacy tables cannot be unregistered.
            assert gone["left"] and "legacy" in gone["left"][0]
        else:
            assert gone["left"] == []
        with pytest.raises(AssertionError):
            lab.connect(listing[0]["vip"], 1)


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_kernel_rule_counts_match_kube_proxy_shape(tmp_path: Path, backend: str) -> None:
    """~3N+2 NAT rules per service with N endpoints + 5 base (ANCHORS), read from the kernel."""
    with mini_lab(tmp_path) as lab:
        lab.write_services(count=7, endpoints=3)
        result = lab.kp("apply", "--mode", "iptables", "--backend", backend)
        counts = lab.kp("count", "--mode", "iptables", "--backend", backend)
        assert counts == result["counts"]
        assert counts["kube_nat_rules"] == 5 + 7 * (3 * 3 + 2) == result["expected_nat_rules"]
        # + the three jumps from PREROUTING, OUTPUT, POSTROUTING
        assert counts["nat_rules"] == counts["kube_nat_rules"] + 3
        # filter: 6 top-level chains; nat: 4 + per service one KUBE-SVC and 3 KUBE-SEP
        assert counts["kube_chains"] == 6 + 4 + 7 * (1 + 3)
        saved = lab.save(f"iptables-{backend}-save").splitlines()
        # one rule per ClusterIP:port in KUBE-SERVICES (nat), + the KUBE-NODEPORTS tail
        nat = saved[saved.index("*nat") :]
        assert sum(1 for line in nat if line.startswith("-A KUBE-SERVICES ")) == 7 + 1


def test_switching_mode_removes_the_other_plane(tmp_path: Path) -> None:
    with mini_lab(tmp_path) as lab:
        listing = lab.write_services(count=2, endpoints=3)
        lab.kp("apply", "--mode", "iptables", "--backend", "nft")
        switched = lab.kp("apply", "--mode", "nftables")
        assert switched["changed"] is True and switched["removed_other"] == ["iptables-nft"]
        assert "KUBE-" not in lab.save("iptables-nft-save")
        assert lab.kp("count", "--mode", "nftables")["table"] is True
        seen = lab.connect(listing[1]["vip"], 30)
        assert sum(seen.values()) == 30


def _playbook(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{REPO / '.venv/bin'}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _changed(recap: str) -> int:
    line = next(line for line in recap.splitlines() if "changed=" in line and "ok=" in line)
    return int(line.split("changed=")[1].split()[0])


def test_role_applies_once_then_reports_no_change_and_removes(tmp_path: Path) -> None:
    with mini_lab(tmp_path) as lab:
        listing = lab.write_services(count=3, endpoints=3)
        lab.state.mkdir(parents=True)
        (lab.state / "lab.json").write_text(json.dumps({"node_ns": lab.node, "pod_cidr": CIDR}))
        extra = [
            "-e",
            f"peer_kube_proxy_state_dir={lab.state}",
            "-e",
            f"peer_kube_proxy_manifests_dir={lab.manifests}",
        ]
        for mode, changed in (("iptables", 1), ("iptables", 0), ("nftables", 1), ("nftables", 0)):
            run = _playbook(
                "playbooks/peer_kube_proxy.yml", *extra, "-e", f"peer_kube_proxy_mode={mode}"
            )
            assert run.returncode == 0, run.stdout[-3000:]
            assert _changed(run.stdout) == changed, (mode, run.stdout[-3000:])
        assert sum(lab.connect(listing[2]["vip"], 10).values()) == 10
        bad = _playbook("playbooks/peer_kube_proxy.yml", *extra, "-e", "peer_kube_proxy_mode=ipvs")
        assert bad.returncode != 0 and "peer_kube_proxy_mode" in bad.stdout
        remove = [
            "lab",
            "-m",
            "ansible.builtin.include_role",
            "-a",
            "name=peer_kube_proxy tasks_from=remove.yml",
            *extra,
        ]
        env = {**os.environ, "PATH": f"{REPO / '.venv/bin'}:{os.environ['PATH']}"}
        for expect in ("CHANGED", "SUCCESS"):
            run = subprocess.run(
                [str(REPO / ".venv/bin/ansible"), *remove],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
            )
            assert run.returncode == 0 and expect in run.stdout, run.stdout[-3000:]
        assert lab.kp("count", "--mode", "nftables")["table"] is False
