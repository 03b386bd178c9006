"""What the flood suite puts into the lab and takes out again: flood pods, flood services,
kube-proxy's rules for them. Pods and services follow the lab's conventions.

- Flood pods are real pods of the lab (namespace `<prefix>-flood-NNN`, routed veth from the
  node namespace, a /32 address, cgroup `<prefix>/flood-NNN`), made by the same functions
  as netns_lab's pods; nothing runs in them (they are endpoints, like the thesis' flooder
  pods; only the measured target is served by nginx, on the lab's server pods). They take
  the highest addresses of the pod CIDR, so they never collide with the lab's own pods, and
  are listed in STATE/flood/pods.json (not in lab.json, which netns_lab owns).
- Flood services are Service + EndpointSlice manifests. The agent's view (every flood
  service and the kmesh target, never the iptables target) is the suite's file in the
  agent's watched directory; kube-proxy's view (every flood service and both targets) is
  STATE/flood/manifests/: a copy of that file plus target-ipt.yaml.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import time
from pathlib import Path
from typing import Any

from kmesh_lab import cgroups, kube_proxy_apply, lab, netns, services
from kmesh_lab.floodplan import PLANES, Stage, endpoint_indices, pod_names, service_name
from kmesh_lab.floodplan import target_names as _target_names

AGENT_FILE = "suite_flood-services"
PORT = 80


def flood_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "flood"


def kube_manifests_dir(state_dir: Path) -> Path:
    return flood_dir(state_dir) / "manifests"


# ------------------------------------------------------------------ pods


def pod_addresses(pod_cidr: str, taken: set[str], count: int) -> list[str]:
    """`count` addresses from the top of the CIDR, none of them taken by the lab's pods."""
    net = ipaddress.ip_network(pod_cidr)
    gateway = netns.gateway(pod_cidr)
    out: list[str] = []
    for host in reversed(list(net.hosts())):
        address = str(host)
        if address in taken or address == gateway:
            # the lab's pods sit at the bottom: meeting one means the CIDR is full
            break
        out.append(address)
        if len(out) == count:
            return out
    raise ValueError(
        f"pod CIDR {pod_cidr} has room for {len(out)} flood pods beside the lab's "
        f"{len(taken)} pods, not {count}: choose a larger netns_lab_pod_cidr or fewer pods"
    )


def pods_up(state_dir: Path, count: int) -> dict[str, Any]:
    """Create the flood pods that are missing; return their addresses and the time taken."""
    state = lab.load_state(state_dir)
    taken = {p["address"] for p in state["pods"].values()}
    names = pod_names(count)
    addresses = pod_addresses(state["pod_cidr"], taken, count)
    layout = cgroups.detect()
    gw = netns.gateway(state["pod_cidr"])
    started = time.monotonic()
    created = 0
    pods = {}
    for name, address in zip(names, addresses, strict=True):
        pod_ns = f"{state['prefix']}-{name}"
        veth = netns.host_ifname("v-", name)
        created += netns.ensure_pod(state["node_ns"], pod_ns, veth, netns.Pod(name, address), gw)
        cgroups.ensure_group(layout, f"{state['prefix']}/{name}", 0)
        pods[name] = {"address": address, "netns": pod_ns, "cgroup": f"{state['prefix']}/{name}"}
    path = flood_dir(state_dir) / "pods.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pods, indent=2, sort_keys=True) + "\n")
    return {
        "pods": len(pods),
        "pods_created": created,
        "pods_s": round(time.monotonic() - started, 3),
        "addresses": [p["address"] for p in pods.values()],
        "existing_namespaces": sum(1 for p in pods.values() if p["netns"] in netns.namespaces()),
    }


def pods_down(state_dir: Path, prefix: str) -> int:
    """Delete every flood pod (namespace and cgroup, found on the host); return how many."""
    layout = cgroups.detect()
    removed = 0
    for name in sorted(netns.namespaces()):
        if name.startswith(f"{prefix}-flood-"):
            removed += netns.delete_namespace(name)
            pod = name[len(prefix) + 1 :]
            cgroups.remove_tree(layout, f"{prefix}/{pod}")
    # cgroups of pods whose namespace was already gone
    for top in layout.limit_dirs(prefix):
        if top.is_dir():
            for sub in top.glob("flood-*"):
                cgroups.remove_tree(layout, f"{prefix}/{sub.name}")
    return removed


# ------------------------------------------------------------------ services


def _service_docs(name: str, vip: str, addresses: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": services.NAMESPACE},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": vip,
                "ports": [{"name": "http", "port": PORT, "protocol": "TCP", "targetPort": 80}],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-1",
                "namespace": services.NAMESPACE,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        },
    ]


def targets(stage: Stage, servers: list[str]) -> dict[str, dict[str, Any]]:
    """plane -> {name, vip, port, endpoints}: the services the A/B runs request."""
    names = _target_names(stage)
    out = {}
    # the two targets' VIPs come right after the flood services' range
    vips = {
        "ipt": services.vip(stage.first_index + stage.services),
        "km": services.vip(stage.first_index + stage.services + 1),
    }
    for plane in PLANES:
        suffix = "ipt" if plane == "iptables" else "km"
        out[plane] = {
            "name": names[plane],
            "key": f"{services.NAMESPACE}/{names[plane]}:http",
            "vip": vips[suffix],
            "port": PORT,
            "endpoints": servers,
        }
    return out


def flood_docs(stage: Stage, pod_addresses_: list[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for i in range(stage.services):
        idx = endpoint_indices(i, stage.endpoints, len(pod_addresses_))
        addresses = [pod_addresses_[j] for j in idx]
        docs += _service_docs(service_name(i), services.vip(stage.first_index + i), addresses)
    return docs


def write_services(
    stage: Stage, state_dir: Path, manifests_dir: Path, pod_addresses_: list[str]
) -> dict[str, Any]:
    """kube-proxy's view (flood + both targets) and the agent's (flood + kmesh target)."""
    state = lab.load_state(state_dir)
    servers = [p["address"] for p in state["pods"].values() if p["role"] == "server"]
    tg = targets(stage, servers)
    started = time.monotonic()
    docs = flood_docs(stage, pod_addresses_)
    km = _service_docs(tg["kmesh_node"]["name"], tg["kmesh_node"]["vip"], servers)
    ipt = _service_docs(tg["iptables"]["name"], tg["iptables"]["vip"], servers)
    # rendered once: kube-proxy's directory gets a copy of the agent's file plus the
    # iptables target in a file of its own (YAML of 20,000 objects takes seconds to dump)
    agent_file = services.write(manifests_dir, AGENT_FILE, [*docs, *km])
    kube_dir = kube_manifests_dir(state_dir)
    kube_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(agent_file, kube_dir / "flood.yaml")
    services.write(kube_dir, "target-ipt", ipt)
    return {
        "targets": tg,
        "agent_file_services": stage.services + 1,
        "kube_file_services": stage.services + 2,
        "write_s": round(time.monotonic() - started, 3),
    }


def remove_agent_file(manifests_dir: Path) -> bool:
    path = manifests_dir / f"{AGENT_FILE}.yaml"
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed


# ------------------------------------------------------------------ kube-proxy rules


def apply_rules(state_dir: Path, backend: str) -> dict[str, Any]:
    """kube-proxy's iptables rules for the flood (one restore, via kube_proxy_apply); its
    bookkeeping goes to STATE/flood, apart from the peer_kube_proxy role's."""
    state = lab.load_state(state_dir)
    loaded = kube_proxy_apply.load_manifests(kube_manifests_dir(state_dir))
    cfg = kube_proxy_apply.kp.Config(
        cluster_cidr=state["pod_cidr"], service_cidrs=(services.SERVICE_CIDR,)
    )
    started = time.monotonic()
    result = kube_proxy_apply.apply(
        state["node_ns"], "iptables", backend, loaded.ports, cfg, flood_dir(state_dir)
    )
    result["apply_s"] = round(time.monotonic() - started, 3)
    result["skipped"] = loaded.skipped
    return result


def remove_rules(state_dir: Path) -> dict[str, Any]:
    state = lab.load_state(state_dir)
    result = kube_proxy_apply.remove(state["node_ns"])
    (flood_dir(state_dir) / kube_proxy_apply.STATE_FILE).unlink(missing_ok=True)
    return result


def remove_state(state_dir: Path) -> bool:
    path = flood_dir(state_dir)
    if path.is_dir():
        shutil.rmtree(path)
        return True
    return False
