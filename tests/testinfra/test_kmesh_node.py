"""What roles/kmesh_node leaves: the agent running, its programs attached to the lab's
cgroup, its maps pinned, the base services loaded, metrics served."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

BPFFS = Path("/sys/fs/bpf/kmesh_node")
PIDFILE = Path("/run/kmesh-lab/pids/kmesh-node.pid")


def test_agent_runs_from_the_recorded_pid(host) -> None:
    pid = PIDFILE.read_text().split()[0]
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
    assert "kmesh-node run --source manifests:" in cmdline


def test_programs_are_attached_to_the_lab_cgroup(host, lab: dict) -> None:
    out = json.loads(host.check_output(f"bpftool -j cgroup show {lab['cgroup_root']}"))
    attach_types = {entry["attach_type"] for entry in out}
    assert {"cgroup_inet4_connect", "cgroup_inet6_connect", "cgroup_udp4_sendmsg"} <= attach_types


def test_maps_are_pinned_and_status_counts_the_base_services(host) -> None:
    assert host.file(str(BPFFS)).is_directory
    status = json.loads(host.check_output(f"{host_bin()}/kmesh-node status --json"))
    assert status["installed"] is True
    assert status["services"] >= 1 and status["endpoints"] >= 1


def test_acceleration_matches_the_agent_flag(host, lab: dict) -> None:
    """kmesh_node_accelerate true: sockops on the lab cgroup and sk_msg on the pinned
    sockhash; false: neither attached nor pinned (a restart without the flag removes them)."""
    pid = PIDFILE.read_text().split()[0]
    wanted = "--accelerate" in host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    status = json.loads(host.check_output(f"{host_bin()}/kmesh-node status --json"))
    out = json.loads(host.check_output(f"bpftool -j cgroup show {lab['cgroup_root']}"))
    # bpftool names the attach type "sock_ops" or "cgroup_sock_ops" depending on its version
    sock_ops = [e for e in out if e["attach_type"] in ("sock_ops", "cgroup_sock_ops")]
    accel_pins = {"sockhash", "prog_sockops", "prog_sk_msg", "link_sockops", "link_sk_msg"}
    assert status["accel"]["enabled"] is wanted, status["accel"]
    if wanted:
        assert [e["name"] for e in sock_ops] == ["kmn_sockops"]
        assert accel_pins <= set(status["pins"])
    else:
        assert sock_ops == [] and accel_pins.isdisjoint(status["pins"])


def test_metrics_are_served_with_the_kmesh_node_prefix() -> None:
    body = urllib.request.urlopen("http://127.0.0.1:15020/metrics", timeout=10).read().decode()
    assert "kmesh_node_services" in body
    assert "kmesh_node_map_bytes" in body


def host_bin() -> str:
    return str(Path(__file__).resolve().parents[2] / ".venv/bin")
