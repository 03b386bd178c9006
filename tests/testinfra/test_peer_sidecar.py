"""What roles/peer_sidecar leaves when it is installed: per meshed pod, HAProxy running as
the proxy user in that pod's netns and cgroup, listening on the outbound and inbound ports,
its config accepted by HAProxy, its counters readable, and istio-iptables' capture in the
pod's nat table; the state file names the proxy and its exact version.

The peer is not part of site.yml's default run (the latency suite brings it in): when this
converge did not install it (no peer_sidecar.json), every check here is skipped."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from kmesh_lab.sidecar import apply as sidecar
from kmesh_lab.sidecar import capture

STATE_DIR = Path(os.environ.get("KMESH_LAB_STATE", "/run/kmesh-lab"))


@pytest.fixture(scope="module")
def plane() -> dict:
    path = STATE_DIR / sidecar.STATE_FILE
    if not path.is_file():
        pytest.skip(f"the sidecar peer is not installed in this converge ({path} is absent)")
    return json.loads(path.read_text())


def test_state_names_the_proxy_and_its_exact_version(host, plane: dict) -> None:
    assert plane["plane"] == "sidecar" and plane["proxy"] == "HAProxy"
    out = host.check_output(f"{plane['binary']} -v")
    assert re.search(rf"^HAProxy version {re.escape(plane['version'])} ", out, re.M), out
    assert plane["pods"], "no pod is meshed"
    user = host.user(plane["user"])
    assert user.exists and user.uid == plane["uid"] and user.gid == plane["gid"]


def test_each_proxy_runs_in_its_pod_as_the_proxy_user(host, plane: dict) -> None:
    for pod, entry in plane["pods"].items():
        pid = entry["pid"]
        status = host.file(f"/proc/{pid}/status").content_string
        assert re.search(rf"^Uid:\s+{plane['uid']}\s", status, re.M), pod
        assert "haproxy" in host.file(f"/proc/{pid}/cmdline").content_string, pod
        # Same network namespace as the pod, and inside the pod's cgroup.
        assert host.check_output(f"ip netns identify {pid}").strip() == entry["netns"], pod
        cgroup = host.file(f"/proc/{pid}/cgroup").content_string
        assert f"/{pod}" in cgroup, (pod, cgroup)
        listening = host.check_output(f"ss -N {entry['netns']} -Hltn")
        for port in (plane["ports"]["outbound"], plane["ports"]["inbound"]):
            assert re.search(rf":{port}\s", listening), (pod, port, listening)


def test_configs_are_valid_and_counters_readable(host, plane: dict) -> None:
    for pod, entry in plane["pods"].items():
        cmd = host.run(f"{plane['binary']} -c -q -f {entry['config']}")
        assert cmd.rc == 0, (pod, cmd.stdout, cmd.stderr)
        stats = sidecar.stats(STATE_DIR, pod)
        assert {"outbound", "inbound", "PassthroughCluster"} <= set(stats), pod


def test_capture_is_istios_in_every_meshed_pod(host, plane: dict) -> None:
    for pod, entry in plane["pods"].items():
        saved = host.check_output(
            f"ip netns exec {entry['netns']} iptables-{plane['capture']['iptables_backend']}-save"
        )
        assert len(capture.saved_rules(saved)) == plane["capture"]["rules_per_pod"], pod
        assert sorted(capture.saved_chains(saved)) == sorted(capture.CHAINS), pod
        assert f"--to-ports {plane['ports']['outbound']}" in saved
        assert f"--uid-owner {plane['uid']}" in saved
