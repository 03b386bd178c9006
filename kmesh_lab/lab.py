"""Bring the netns lab up and down: pods = network namespace + cgroup (+ CPU limit).

The lab's description is written to `<state_dir>/lab.json` when it comes up; `podexec`, the
suites and the teardown read it from there, so nothing else has to repeat names or paths.
The teardown works from what exists on the host (namespaces and cgroups carrying the lab's
prefix, PID files in the state dir), so it also cleans up after a run that died half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kmesh_lab import cgroups, netns

DEFAULT_STATE_DIR = Path("/run/kmesh-lab")


@dataclass(frozen=True)
class PodSpec:
    name: str
    role: str  # "client" or "server"
    cpu_m: int = 0  # CPU limit in millicores, 0 = none
    address: str = ""


@dataclass
class LabSpec:
    prefix: str = "kmlab"
    pod_cidr: str = "10.244.0.0/24"
    pods: list[PodSpec] = field(default_factory=list)
    state_dir: Path = DEFAULT_STATE_DIR

    @property
    def node_ns(self) -> str:
        return f"{self.prefix}-node"

    def pod_ns(self, pod: str) -> str:
        return f"{self.prefix}-{pod}"

    def cgroup(self, pod: str) -> str:
        return f"{self.prefix}/{pod}"


def build_spec(
    prefix: str,
    pod_cidr: str,
    clients: int,
    servers: int,
    client_cpu_m: object,
    server_cpu_m: object,
    state_dir: Path = DEFAULT_STATE_DIR,
) -> LabSpec:
    """Validate the inventory's numbers and lay out pods with addresses."""
    for name, value in (("netns_lab_clients", clients), ("netns_lab_pods", servers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {value!r} must be a whole number >= 1")
    c_m = cgroups.parse_millicores(client_cpu_m, "netns_lab_client_cpu_m")
    s_m = cgroups.parse_millicores(server_cpu_m, "netns_lab_server_cpu_m")
    names = [(f"client-{i}", "client", c_m) for i in range(clients)]
    names += [(f"server-{i}", "server", s_m) for i in range(servers)]
    placed = netns.pod_addresses(pod_cidr, [n for n, _, _ in names])
    pods = [PodSpec(n, role, m, p.address) for (n, role, m), p in zip(names, placed, strict=True)]
    return LabSpec(prefix=prefix, pod_cidr=pod_cidr, pods=pods, state_dir=Path(state_dir))


def up(spec: LabSpec, layout: cgroups.Layout | None = None) -> bool:
    """Create whatever is missing; return whether anything changed."""
    layout = layout or cgroups.detect()
    gw = netns.gateway(spec.pod_cidr)
    changed = netns.ensure_node(spec.node_ns)
    for pod in spec.pods:
        veth = netns.host_ifname("v-", pod.name)
        changed |= netns.ensure_pod(
            spec.node_ns, spec.pod_ns(pod.name), veth, netns.Pod(pod.name, pod.address), gw
        )
        changed |= cgroups.ensure_group(layout, spec.cgroup(pod.name), pod.cpu_m)
    changed |= _write_state(spec, layout)
    return changed


def _write_state(spec: LabSpec, layout: cgroups.Layout) -> bool:
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "prefix": spec.prefix,
        "pod_cidr": spec.pod_cidr,
        "node_ns": spec.node_ns,
        "cgroup_mode": layout.mode,
        "cgroup_v2_root": str(layout.v2_root),
        "cgroup_root": str(layout.v2_dir(spec.prefix)),
        "pods": {
            p.name: {**asdict(p), "netns": spec.pod_ns(p.name), "cgroup": spec.cgroup(p.name)}
            for p in spec.pods
        },
    }
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    path = spec.state_dir / "lab.json"
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def load_state(state_dir: Path = DEFAULT_STATE_DIR) -> dict:
    path = Path(state_dir) / "lab.json"
    if not path.is_file():
        raise RuntimeError(f"no lab is up ({path} is missing). Fix: run `make lab` first")
    return json.loads(path.read_text())


def down(
    prefix: str, state_dir: Path = DEFAULT_STATE_DIR, layout: cgroups.Layout | None = None
) -> bool:
    """Remove everything the lab created: processes, namespaces, cgroups, state."""
    layout = layout or cgroups.detect()
    changed = stop_processes(prefix, Path(state_dir), layout)
    for name in sorted(netns.namespaces()):
        if name.startswith(f"{prefix}-"):
            changed |= netns.delete_namespace(name)
    changed |= cgroups.remove_tree(layout, prefix)
    if Path(state_dir).is_dir():
        shutil.rmtree(state_dir)
        changed = True
    return changed


def stop_processes(prefix: str, state_dir: Path, layout: cgroups.Layout) -> bool:
    """SIGTERM what the lab started (PID files, then anything left in its cgroups or
    namespaces, which only the lab's own processes can have joined), SIGKILL stragglers."""
    pids: set[int] = set()
    pid_dir = state_dir / "pids"
    if pid_dir.is_dir():
        for pidfile in pid_dir.glob("*.pid"):
            pids |= pid_if_same(pidfile)
    pids |= cgroups.procs(layout, prefix)
    for name in netns.namespaces():
        if name.startswith(f"{prefix}-"):
            pids |= netns.pids_in(name)
    pids.discard(os.getpid())
    if not pids:
        return False
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    _signal_all({p for p in pids if alive(p)}, signal.SIGKILL)
    return True


def pid_if_same(pidfile: Path) -> set[int]:
    """The PID in a lab PID file, if that process is still the one we started (the file
    records its start time, so a reused PID is never signalled)."""
    try:
        pid_text, started = pidfile.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return set()
    return {pid} if process_start_time(pid) == started else set()


def process_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counted after the ")" that ends the command name.
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
