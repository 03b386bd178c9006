"""The flood suite's O(1) plane switch on the real kernel: kube-proxy's rules applied once in
a namespace of the test's own (`kmtest-<random>-node`), then only their jumps removed and
restored; the KUBE-* chains stay loaded throughout, and what is hooked is read back from the
kernel. The namespace is deleted in `finally`."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from kmesh_lab import floodhooks, kube_proxy_apply
from kmesh_lab import kube_proxy as kp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]


def _ports(n: int) -> list[kp.ServicePort]:
    return [
        kp.ServicePort(
            "lab", f"flood-{i:05d}", "http", f"10.96.9.{i + 1}", 80, "tcp", (("10.251.9.2", 80),)
        )
        for i in range(n)
    ]


def test_jumps_out_and_back_with_every_rule_still_loaded(tmp_path: Path) -> None:
    ns = f"kmtest-{secrets.token_hex(3)}-node"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        cfg = kp.Config(cluster_cidr="10.251.9.0/24", service_cidrs=("10.96.0.0/12",))
        applied = kube_proxy_apply.apply(ns, "iptables", "nft", _ports(20), cfg, tmp_path)
        loaded = applied["counts"]
        assert loaded["kube_nat_rules"] == kp.expected_nat_rules(_ports(20))

        hooked = floodhooks.summary(floodhooks.read_jumps(ns))
        assert hooked["hooked_jumps"] == len(kp.JUMPS)
        assert hooked["hooked_nat_kube_services_jumps"] == 2  # PREROUTING and OUTPUT

        off = floodhooks.unhook(ns)
        assert off == {
            "hooked_jumps": 0,
            "hooked_kube_services_jumps": 0,
            "hooked_nat_kube_services_jumps": 0,
        }
        # unreachable, not removed: every KUBE-* rule and chain is still in the kernel
        assert (
            kube_proxy_apply.rule_counts(ns, "iptables")["kube_nat_rules"]
            == (loaded["kube_nat_rules"])
        )
        assert floodhooks.unhook(ns)["hooked_jumps"] == 0  # idempotent

        on = floodhooks.hook(ns)
        assert on == hooked
        save = subprocess.run(
            ["ip", "netns", "exec", ns, "iptables-nft-save"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pos = floodhooks.kube_services_position(save, "lab/flood-00019:http")
        assert pos == {"position": 20, "rules": 21}  # the nodeports rule is last
        # kube-proxy's order: the service portals jump first in nat PREROUTING
        first = next(ln for ln in save.splitlines() if ln.startswith("-A PREROUTING"))
        assert first.endswith("-j KUBE-SERVICES")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
