"""The lab's network: one "node" namespace and routed veths to each pod namespace.

Why routed veths (Calico style) and not a bridge: every packet between two pods then crosses
the node namespace's IP layer, exactly where kube-proxy's iptables/nftables rules and the
thesis' Calico baseline act, without depending on br_netfilter. Pods get a /32 address and a
default route through the node; the node has one /32 route per pod and no default route,
so nothing in the lab can reach an address outside it. The host's root namespace is never
touched.

Everything goes through iproute2 (`ip -j` for reading state), so what this module does is
what a person would type.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")
# Gateway address every pod routes through; owned by each node-side veth (like Calico's
# 169.254.1.1) so that pods need no per-node configuration.
MAX_IFNAME = 15


@dataclass(frozen=True)
class Pod:
    name: str
    address: str  # IPv4, inside the pod CIDR


def run(*args: str, netns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", *(("-n", netns) if netns else ()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}")
    return proc.stdout


def namespaces() -> set[str]:
    return {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def links(netns: str) -> dict[str, dict]:
    return {link["ifname"]: link for link in json.loads(run("-j", "link", "show", netns=netns))}


def addresses(netns: str, ifname: str) -> set[str]:
    out = json.loads(run("-j", "addr", "show", "dev", ifname, netns=netns))
    return {f"{a['local']}/{a['prefixlen']}" for entry in out for a in entry.get("addr_info", [])}


def routes(netns: str) -> set[str]:
    return {r["dst"] for r in json.loads(run("-j", "route", "show", netns=netns))}


def sysctl(netns: str, key: str, value: str) -> bool:
    path = Path("/proc/sys") / key.replace(".", "/")
    read = ["ip", "netns", "exec", netns, "cat", str(path)]
    current = subprocess.run(read, capture_output=True, text=True, check=True).stdout.strip()
    if current == value:
        return False
    write = ["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"]
    subprocess.run(write, check=True, capture_output=True)
    return True


def gateway(pod_cidr: str) -> str:
    return str(next(ipaddress.ip_network(pod_cidr).hosts()))


def pod_addresses(pod_cidr: str, names: list[str]) -> list[Pod]:
    """Give pods consecutive addresses after the gateway; fail clearly when they do not fit."""
    net = ipaddress.ip_network(pod_cidr)
    hosts = net.hosts()
    next(hosts)  # the gateway
    pods = []
    for name in names:
        try:
            pods.append(Pod(name, str(next(hosts))))
        except StopIteration:
            raise ValueError(
                f"pod CIDR {pod_cidr} has room for {net.num_addresses - 3} pods, not "
                f"{len(names)}: choose a larger netns_lab_pod_cidr"
            ) from None
    return pods


def host_ifname(prefix: str, pod: str) -> str:
    name = f"{prefix}{pod}"
    if len(name) > MAX_IFNAME:
        raise ValueError(
            f"interface name {name!r} is longer than {MAX_IFNAME} characters: "
            "use shorter pod names or prefix"
        )
    return name


def ensure_node(node_ns: str) -> bool:
    changed = False
    if node_ns not in namespaces():
        run("netns", "add", node_ns)
        changed = True
    if links(node_ns)["lo"]["operstate"] != "UNKNOWN":
        run("link", "set", "lo", "up", netns=node_ns)
        changed = True
    changed |= sysctl(node_ns, "net.ipv4.ip_forward", "1")
    return changed


def ensure_pod(node_ns: str, pod_ns: str, veth: str, pod: Pod, gw: str) -> bool:
    """Namespace, veth pair, /32 address, routes both ways; idempotent."""
    changed = False
    if pod_ns not in namespaces():
        run("netns", "add", pod_ns)
        changed = True
    if veth not in links(node_ns):
        # Create in the node namespace, then move the peer into the pod as eth0.
        run(
            "link",
            "add",
            veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod_ns,
            netns=node_ns,
        )
        changed = True
    pod_links = links(pod_ns)
    for ns, ifname, link_map in (
        (node_ns, veth, links(node_ns)),
        (pod_ns, "eth0", pod_links),
        (pod_ns, "lo", pod_links),
    ):
        if "UP" not in link_map[ifname].get("flags", []):
            run("link", "set", ifname, "up", netns=ns)
            changed = True
    # The node side answers for the gateway address on every pod link.
    if f"{gw}/32" not in addresses(node_ns, veth):
        run("addr", "add", f"{gw}/32", "dev", veth, netns=node_ns)
        changed = True
    if f"{pod.address}/32" not in addresses(pod_ns, "eth0"):
        run("addr", "add", f"{pod.address}/32", "dev", "eth0", netns=pod_ns)
        changed = True
    pod_routes = routes(pod_ns)
    if gw not in pod_routes:
        run("route", "add", gw, "dev", "eth0", "scope", "link", netns=pod_ns)
        changed = True
    if "default" not in pod_routes:
        run("route", "add", "default", "via", gw, "dev", "eth0", netns=pod_ns)
        changed = True
    if pod.address not in routes(node_ns):
        run("route", "add", f"{pod.address}/32", "dev", veth, netns=node_ns)
        changed = True
    return changed


def delete_namespace(name: str) -> bool:
    if name not in namespaces():
        return False
    run("netns", "del", name)
    return True


def pids_in(netns: str) -> set[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}
