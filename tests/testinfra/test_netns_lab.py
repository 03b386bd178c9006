"""What roles/netns_lab leaves behind: pods, addresses, routes, cgroups, limits, servers."""

from __future__ import annotations

import json
import math
import time

from kmesh_lab import cgroups

from .conftest import REPO


def test_every_pod_has_its_namespace(host, lab: dict, pods: dict) -> None:
    names = set(host.check_output("ip netns list | cut -d' ' -f1").split())
    assert lab["node_ns"] in names
    assert {p["netns"] for p in pods.values()} <= names


def test_pods_have_their_address_and_route_through_the_node(host, pods: dict) -> None:
    for pod in pods.values():
        addrs = json.loads(host.check_output(f"ip -n {pod['netns']} -j addr show dev eth0"))
        assert f"{pod['address']}" in {a["local"] for a in addrs[0]["addr_info"]}
        route = json.loads(host.check_output(f"ip -n {pod['netns']} -j route show default"))
        assert route and route[0]["dev"] == "eth0"


def test_the_lab_touches_nothing_in_the_root_namespace(host, lab: dict) -> None:
    prefix = lab["pod_cidr"].rsplit(".", 2)[0]  # e.g. 10.244
    assert prefix not in host.check_output("ip -4 addr show")
    assert prefix not in host.check_output("ip -4 route show")


def test_the_node_has_no_way_out(host, lab: dict) -> None:
    # No default route: anything not for a pod is unreachable, by construction.
    assert json.loads(host.check_output(f"ip -n {lab['node_ns']} -j route show default")) == []


def test_cpu_limit_is_written_where_the_kernel_enforces_it(host, lab: dict, pods: dict) -> None:
    layout = cgroups.detect()
    assert layout.mode == lab["cgroup_mode"]
    for pod in pods.values():
        assert host.file(str(layout.v2_dir(pod["cgroup"]))).is_directory
        if layout.v1_cpu_root:
            quota = host.file(f"{layout.v1_cpu_root}/{pod['cgroup']}/cpu.cfs_quota_us")
            expected = "-1" if pod["cpu_m"] == 0 else str(cgroups.quota_us(pod["cpu_m"]))
        else:
            quota = host.file(f"{layout.v2_dir(pod['cgroup'])}/cpu.max")
            expected = "max" if pod["cpu_m"] == 0 else str(cgroups.quota_us(pod["cpu_m"]))
        assert quota.content_string.split()[0] == expected, pod["name"]


def test_a_busy_loop_cannot_exceed_the_pod_limit(host, pods: dict) -> None:
    limited = [p for p in pods.values() if p["cpu_m"] > 0]
    assert limited, "the lab has no CPU-limited pod to check"
    pod = limited[0]
    layout = cgroups.detect()
    # More busy loops than the limit allows (and at least 2), for a bounded 3 s.
    loops = max(2, math.ceil(pod["cpu_m"] / 1000) + 1)
    throttled = cgroups.throttled_periods(layout, pod["cgroup"])
    before, t0 = cgroups.usage_usec(layout, pod["cgroup"]), time.monotonic()
    host.run(
        f"{REPO}/tools/podexec.sh {pod['name']} -- sh -c "
        f"'for i in $(seq {loops}); do timeout 3 sh -c \"while :; do :; done\" & done; wait'"
    )
    used = (cgroups.usage_usec(layout, pod["cgroup"]) - before) / 1e6
    share_m = used / (time.monotonic() - t0) * 1000
    throttled = cgroups.throttled_periods(layout, pod["cgroup"]) - throttled
    # Never above the limit (15 % for CFS period granularity), and the loops did run.
    assert share_m <= pod["cpu_m"] * 1.15, f"{pod['name']} used {share_m:.0f} m"
    assert share_m > 0, f"{pod['name']}'s loops never ran"
    # Where the node had room for more, the kernel held the pod back: it throttled it.
    # (On a saturated node the loops may get less than the limit and are never throttled.)
    if share_m >= pod["cpu_m"] * 0.9:
        assert throttled > 0, f"{pod['name']} reached its limit without being throttled"


def test_servers_answer_on_port_80(host, pods: dict) -> None:
    clients = [p for p in pods.values() if p["role"] == "client"]
    for server in (p for p in pods.values() if p["role"] == "server"):
        assert host.run(f"ss -N {server['netns']} -Hltn 'sport = :80'").stdout.strip()
        out = host.check_output(
            f"{REPO}/tools/podexec.sh {clients[0]['name']} -- python3 -c "
            f"\"import urllib.request as u; print(u.urlopen('http://{server['address']}/', "
            f'timeout=5).status)"'
        )
        assert out.strip() == "200"


def test_servers_run_inside_their_pod_cgroup(host, pods: dict) -> None:
    layout = cgroups.detect()
    for server in (p for p in pods.values() if p["role"] == "server"):
        pids = cgroups.procs(layout, server["cgroup"])
        comms = {host.file(f"/proc/{pid}/comm").content_string.strip() for pid in pids}
        assert "nginx" in comms, server["name"]
