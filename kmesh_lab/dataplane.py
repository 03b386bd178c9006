"""Put the lab into exactly one data plane for a suite's services, and say what the kernel holds.

    python -m kmesh_lab.dataplane select --plane P LAB-OPTIONS     # switch (idempotent)
    python -m kmesh_lab.dataplane describe [--plane P] LAB-OPTIONS  # read only
    python -m kmesh_lab.dataplane reset LAB-OPTIONS                 # = select pod_ip
    python -m kmesh_lab.dataplane planes                            # names, one a line

LAB-OPTIONS: --state-dir (lab.json, PID files) --services-dir (the suite's OWN manifests
directory, never watched by the agent) --agent-dir (the directory the agent watches)
--prefix (the suite's file prefix, suite_*) --bpffs --metrics [--sync-timeout S]. Every
command prints one JSON object; `select` has `changed` (true only when something in the
lab was changed) and `state` (what `describe` prints). Errors go to stderr, exit 2 for bad
input or a broken lab, 3 when a plane's prerequisite is missing (PlaneUnavailable: the
message names what is missing and how to get it). Python callers use `Lab` + `select()`
(kmesh_lab.latency does, once per block); Ansible tasks call the CLI and read `changed`.
`prerequisite_missing(lab, plane)` says, without changing anything, why a plane cannot run.

Planes (the names go into results as params.data_plane):

- ``pod_ip``: no mesh; clients use the endpoint pod's IP (`target()` says which URL).
- ``kube_proxy_iptables_nft`` / ``kube_proxy_iptables_legacy`` / ``kube_proxy_nftables``:
  kube-proxy's rules for the suite's services in the lab's node namespace
  (kmesh_lab.kube_proxy_apply, rendered from --services-dir).
- ``sidecar``: HAProxy in every lab pod with istio-iptables capture, started and stopped
  through the peer's own CLI (`python -m kmesh_lab.sidecar apply|remove`, what
  roles/peer_sidecar runs) with the suite's manifests; its proxy user comes from that role.
- ``kmesh_node`` / ``kmesh_node_accel``: the agent serves the suite's services (their files
  are copied into --agent-dir); `_accel` = the agent restarted with `--accelerate` (the
  same command line the kmesh_node role started it with, plus that flag).

Why every switch removes the other planes rather than layering them: the agent's connect4
hook runs first, at connect(), so a service the agent knows never reaches kube-proxy's
rules or a sidecar's capture; and kube-proxy's DNAT would still rewrite what the agent
passes on. So for every non-kmesh plane the suite's files are removed from the agent's
directory and the switch waits until the agent's service count no longer includes them;
for the kmesh planes kube-proxy's rules are removed (not just their jumps: the state says
`kube_proxy.rules_in_kernel`, counted from the kernel). Sidecars run only in the sidecar
plane, acceleration only in kmesh_node_accel (sockmap redirection would also speed up
pod_ip and kube-proxy traffic between pods of the attached cgroup).

A legacy-iptables nat table cannot be unregistered from a live namespace (it keeps
conntrack on; see kmesh_lab.kube_proxy_apply): after kube_proxy_iptables_legacy the state
says `kube_proxy.legacy_tables_left`, and a suite should run that plane last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kmesh_lab import agentsample, daemon, kube_proxy_apply, lab, services

PLANES = (
    "pod_ip",
    "kube_proxy_iptables_nft",
    "kube_proxy_iptables_legacy",
    "kube_proxy_nftables",
    "sidecar",
    "kmesh_node",
    "kmesh_node_accel",
)
KMESH_PLANES = ("kmesh_node", "kmesh_node_accel")
# plane -> (kube_proxy_apply mode, backend)
KUBE_PROXY = {
    "kube_proxy_iptables_nft": ("iptables", "nft"),
    "kube_proxy_iptables_legacy": ("iptables", "legacy"),
    "kube_proxy_nftables": ("nftables", "nft"),
}
AGENT = "kmesh-node"  # the agent's daemon name (PID, argv and log files in the state dir)
ACCEL_FLAG = "--accelerate"
AGENT_READY_S = 180.0  # bcc compiles the programs at start: slow on a busy 2-core node
SUITE_MARK = "suite_"


class PlaneError(RuntimeError):
    """The lab could not be put into the plane; the message names the fix."""


class PlaneUnavailable(PlaneError):
    """A prerequisite of the plane is missing (a peer not installed, an agent without a flag)."""


@dataclass(frozen=True)
class Lab:
    """Where the lab, the suite's services and the agent are."""

    state_dir: Path
    services_dir: Path  # the suite's own manifests: the source of every plane's services
    agent_dir: Path  # the directory the agent watches
    prefix: str  # the suite's manifest file prefix (suite_*)
    bpffs: str
    metrics: str
    sync_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not self.prefix.startswith(SUITE_MARK):
            raise PlaneError(
                f"prefix {self.prefix!r}: a suite's manifest files must be named {SUITE_MARK}*"
                " so that the agent's own services are never touched"
            )
        if Path(self.services_dir).resolve() == Path(self.agent_dir).resolve():
            raise PlaneError(
                f"--services-dir {self.services_dir} is the agent's watched directory: give "
                "the suite a directory of its own (the agent serves its files only in the "
                "kmesh planes)"
            )

    @property
    def agent(self) -> agentsample.Agent:
        return agentsample.Agent(self.bpffs, self.metrics, daemon.pidfile(self.state_dir, AGENT))

    def state(self) -> dict[str, Any]:
        try:
            return lab.load_state(self.state_dir)
        except RuntimeError as exc:
            raise PlaneError(str(exc)) from exc


# ------------------------------------------------------------------ the suite's services


def suite_files(directory: Path, prefix: str) -> dict[str, bytes]:
    """{file name: content} of the suite's manifest files in a directory."""
    if not Path(directory).is_dir():
        return {}
    return {
        p.name: p.read_bytes()
        for p in sorted(Path(directory).glob(f"{prefix}*.yaml"))
        if not p.name.startswith(".")
    }


def count_services(directory: Path) -> int:
    """Services in every manifest file of a directory (what the agent should report)."""
    total = 0
    if not Path(directory).is_dir():
        return 0
    for path in sorted(Path(directory).glob("*.yaml")):
        if path.name.startswith("."):
            continue
        for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
            total += isinstance(doc, dict) and doc.get("kind") == "Service"
    return total


def listing(services_dir: Path, prefix: str) -> list[dict[str, Any]]:
    """(name, vip, port, endpoints) of the suite's services, from its own manifests."""
    out: list[dict[str, Any]] = []
    eps: dict[str, list[str]] = {}
    svcs: list[dict[str, Any]] = []
    for name in suite_files(services_dir, prefix):
        for doc in yaml.load_all((Path(services_dir) / name).read_text(), Loader=yaml.CSafeLoader):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "Service":
                svcs.append(doc)
            elif doc.get("kind") == "EndpointSlice":
                owner = doc["metadata"]["labels"]["kubernetes.io/service-name"]
                for ep in doc.get("endpoints", []):
                    eps.setdefault(owner, []).extend(ep.get("addresses", []))
    for doc in svcs:
        name = doc["metadata"]["name"]
        port = doc["spec"]["ports"][0]
        out.append(
            {
                "name": name,
                "vip": doc["spec"]["clusterIP"],
                "port": int(port["port"]),
                "target_port": int(port.get("targetPort", port["port"])),
                "endpoints": eps.get(name, []),
            }
        )
    return out


def target(plane: str, service: dict[str, Any]) -> str:
    """host:port a client uses for one service in this plane: the VIP, or for pod_ip the
    service's first endpoint (no mesh: the client addresses the pod)."""
    check_plane(plane)
    if plane == "pod_ip":
        if not service["endpoints"]:
            raise PlaneError(f"service {service['name']} has no endpoints to address directly")
        return f"{service['endpoints'][0]}:{service['target_port']}"
    return f"{service['vip']}:{service['port']}"


def check_plane(plane: str) -> str:
    if plane not in PLANES:
        raise PlaneError(f"unknown data plane {plane!r}: use one of {', '.join(PLANES)}")
    return plane


# ------------------------------------------------------------------ the agent


def _agent_services(lab_: Lab) -> int:
    return agentsample.services(lab_.agent)


def _wait_agent(lab_: Lab) -> float:
    """Wait until the agent holds exactly the services of its watched directory."""
    return agentsample.wait_services(
        lab_.agent, count_services(lab_.agent_dir), lab_.sync_timeout, poll=0.1
    )


def enroll(lab_: Lab) -> bool:
    """The suite's files in the agent's directory, identical to the suite's own; wait."""
    want = suite_files(lab_.services_dir, lab_.prefix)
    if not want:
        raise PlaneError(
            f"no {lab_.prefix}*.yaml in {lab_.services_dir}: write the suite's services first"
        )
    have = suite_files(lab_.agent_dir, lab_.prefix)
    changed = False
    for name in have.keys() - want.keys():
        (Path(lab_.agent_dir) / name).unlink()
        changed = True
    for name, content in want.items():
        if have.get(name) != content:
            # a dot-file is ignored by the agent's watch until the rename makes it whole
            tmp = Path(lab_.agent_dir) / f".{name}.tmp"
            tmp.write_bytes(content)
            os.replace(tmp, Path(lab_.agent_dir) / name)
            changed = True
    _wait_agent(lab_)
    return changed


def withdraw(lab_: Lab) -> bool:
    """No suite file in the agent's directory; wait until its count no longer has them."""
    names = list(suite_files(lab_.agent_dir, lab_.prefix))
    for name in names:
        (Path(lab_.agent_dir) / name).unlink(missing_ok=True)
    if Path(lab_.agent_dir).is_dir() and daemon.running(lab_.state_dir, AGENT):
        _wait_agent(lab_)
    return bool(names)


def agent_argv(state_dir: Path) -> list[str]:
    """The running agent's command line, as the kmesh_node role (or a switch) started it."""
    path = daemon.argvfile(state_dir, AGENT)
    if not daemon.running(state_dir, AGENT) or not path.is_file():
        raise PlaneError(
            f"the agent is not running (no live {daemon.pidfile(state_dir, AGENT)}): start it "
            "with ansible-playbook playbooks/agent.yml"
        )
    return list(json.loads(path.read_text())["argv"])


def with_accelerate(argv: list[str], on: bool) -> list[str]:
    base = [a for a in argv if a != ACCEL_FLAG]
    return [*base, ACCEL_FLAG] if on else base


def agent_supports_accelerate(argv: list[str]) -> bool:
    """Whether this kmesh-node has the flag (its `run --help` names it)."""
    proc = subprocess.run(
        [argv[0], "run", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    return ACCEL_FLAG in proc.stdout


def set_acceleration(lab_: Lab, on: bool) -> bool:
    """Restart the agent with or without --accelerate (nothing when it already is)."""
    if not daemon.running(lab_.state_dir, AGENT):
        if on:
            agent_argv(lab_.state_dir)  # raises: no agent to accelerate
        return False
    argv = agent_argv(lab_.state_dir)
    wanted = with_accelerate(argv, on)
    if wanted == argv:
        return False
    if on and not agent_supports_accelerate(argv):
        raise PlaneUnavailable(
            f"kmesh_node_accel: {argv[0]} has no {ACCEL_FLAG} flag (sockmap acceleration is "
            "not in this agent yet); update kmesh_node or leave the plane out"
        )
    port = int(lab_.metrics.rsplit(":", 1)[1])
    try:
        daemon.start(lab_.state_dir, AGENT, wanted, ready_port=port, timeout=AGENT_READY_S)
    except RuntimeError as exc:
        raise PlaneError(
            f"the agent did not come back {'with' if on else 'without'} {ACCEL_FLAG}: {exc}"
        ) from exc
    _wait_agent(lab_)
    return True


def agent_state(lab_: Lab) -> dict[str, Any]:
    """What the agent serves and whether its acceleration is on (flag and attached hooks)."""
    if not daemon.running(lab_.state_dir, AGENT):
        return {"running": False}
    argv = agent_argv(lab_.state_dir)
    status = _agent_status(argv[0], lab_.bpffs)
    acc = status.get("accel") or {}
    accel_hooks = sorted(h for h, ln in (acc.get("links") or {}).items() if ln.get("attached"))
    return {
        "running": True,
        "services": _agent_services(lab_),
        "suite_files": sorted(suite_files(lab_.agent_dir, lab_.prefix)),
        "hooks": sorted((status.get("links") or {}).keys()),
        "accelerate_flag": ACCEL_FLAG in argv,
        # the kernel's side: sockops/sk_msg attached and the sockhash pinned (status --json)
        "acceleration_enabled": bool(acc.get("enabled")),
        "acceleration_hooks": accel_hooks,
        "acceleration": ACCEL_FLAG in argv or bool(acc.get("enabled")) or bool(accel_hooks),
    }


def _agent_status(binary: str, bpffs: str) -> dict[str, Any]:
    argv = [binary, "status", "--json", "--bpffs", bpffs]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise PlaneError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout)


# ------------------------------------------------------------------ kube-proxy


def kube_proxy_on(lab_: Lab, plane: str) -> bool:
    mode, backend = KUBE_PROXY[plane]
    needed = "nft" if mode == "nftables" else f"iptables-{backend}-restore"
    if shutil.which(needed) is None:
        raise PlaneUnavailable(
            f"{plane}: {needed} is not installed (apt-get install iptables nftables)"
        )
    state = lab_.state()
    loaded = kube_proxy_apply.load_manifests(Path(lab_.services_dir))
    if not loaded.ports:
        raise PlaneError(f"{plane}: no service ports in {lab_.services_dir} ({loaded.skipped})")
    cfg = kube_proxy_apply.kp.Config(
        cluster_cidr=state["pod_cidr"], service_cidrs=(services.SERVICE_CIDR,)
    )
    try:
        out = kube_proxy_apply.apply(
            state["node_ns"], mode, backend, loaded.ports, cfg, Path(lab_.state_dir)
        )
    except (RuntimeError, ValueError) as exc:
        raise PlaneError(f"{plane}: {exc}") from exc
    return bool(out["changed"])


def kube_proxy_off(lab_: Lab) -> bool:
    if not (Path(lab_.state_dir) / "lab.json").is_file():
        return False
    out = kube_proxy_apply.remove(lab_.state()["node_ns"])
    if out["changed"]:
        (Path(lab_.state_dir) / kube_proxy_apply.STATE_FILE).unlink(missing_ok=True)
    return bool(out["changed"])


def kube_proxy_state(lab_: Lab) -> dict[str, Any]:
    """Rule counts read from the kernel for every mode/backend (never computed)."""
    node_ns = lab_.state()["node_ns"]
    counts = {
        "iptables_nft": kube_proxy_apply.rule_counts(node_ns, "iptables", "nft"),
        "iptables_legacy": kube_proxy_apply.rule_counts(node_ns, "iptables", "legacy"),
        "nftables": kube_proxy_apply.rule_counts(node_ns, "nftables"),
    }
    rules = (
        counts["iptables_nft"]["kube_nat_rules"]
        + counts["iptables_legacy"]["kube_nat_rules"]
        + counts["nftables"]["rules"]
    )
    return {
        "netns": node_ns,
        "counts": counts,
        "rules_in_kernel": rules,
        "legacy_tables_left": sorted(kube_proxy_apply.legacy_tables(node_ns)),
    }


# ------------------------------------------------------------------ the sidecar peer
#
# Driven through its CLI (`python -m kmesh_lab.sidecar apply|remove`, the same entry point
# roles/peer_sidecar uses), with the suite's own manifests; every lab pod is meshed (client
# sidecar outbound, server sidecars inbound: istio's three hops). Its state file
# (<state_dir>/peer_sidecar.json) names the proxy, its version and each pod's master PID.

SIDECAR_USER_UID = 1337  # istio-proxy: its sockets are exempt from the capture


def _sidecar_apply() -> Any:
    """kmesh_lab.sidecar.apply, or PlaneUnavailable naming what is missing."""
    try:
        import importlib

        mod = importlib.import_module("kmesh_lab.sidecar.apply")
    except ImportError as exc:
        raise PlaneUnavailable(
            f"sidecar: the sidecar peer (kmesh_lab.sidecar) is missing ({exc}); install "
            "roles/peer_sidecar or leave the plane out"
        ) from None
    return mod


def _sidecar_missing() -> str | None:
    try:
        _sidecar_apply()
    except PlaneUnavailable as exc:
        return str(exc)
    if shutil.which("haproxy") is None:
        return "sidecar: haproxy is not installed (apt-get install haproxy; host_setup does)"
    try:
        import pwd

        pwd.getpwuid(SIDECAR_USER_UID)
    except KeyError:
        return (
            f"sidecar: no user with uid {SIDECAR_USER_UID} (istio-proxy) for the proxy: "
            "run roles/peer_sidecar (it creates the user)"
        )
    return None


def _sidecar_cli(*args: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "kmesh_lab.sidecar", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise PlaneError(f"`{' '.join(argv[1:])}` failed: {proc.stderr.strip()[-600:]}")
    return json.loads(proc.stdout)


def sidecar_on(lab_: Lab) -> bool:
    why = _sidecar_missing()
    if why:
        raise PlaneUnavailable(why)
    out = _sidecar_cli(
        "apply", "--manifests-dir", str(lab_.services_dir), "--state-dir", str(lab_.state_dir)
    )
    return bool(out["changed"])


def sidecar_off(lab_: Lab) -> bool:
    try:
        _sidecar_apply()
    except PlaneUnavailable:
        return False  # no peer installed: nothing of it can be running
    return bool(_sidecar_cli("remove", "--state-dir", str(lab_.state_dir))["changed"])


def sidecar_state(lab_: Lab) -> dict[str, Any]:
    """Proxies running (PIDs from the daemon files, workers as their children) and capture
    rules counted in each pod's kernel tables."""
    try:
        mod = _sidecar_apply()
    except PlaneUnavailable as exc:
        return {"available": False, "why": str(exc), "running": False, "capture_rules": 0}
    recorded = mod.read_state(Path(lab_.state_dir))
    pids: dict[str, list[int]] = {}
    capture_rules: dict[str, int] = {}
    for pod, entry in lab_.state()["pods"].items():
        master = daemon.running(lab_.state_dir, mod.daemon_name(pod))
        if master:
            pids[pod] = [master, *sorted(mod.children(master))]
        capture_rules[pod] = sum(
            mod.capture_rules_in_kernel(entry["netns"], b) for b in ("nft", "legacy")
        )
    return {
        "available": True,
        "running": bool(pids),
        "proxy": recorded.get("proxy") if pids else None,
        "version": recorded.get("version") if pids else None,
        "pids": pids,
        "capture_rules": sum(capture_rules.values()),
        "capture_rules_per_pod": capture_rules,
        "routes": recorded.get("routes") if pids else None,
    }


# ------------------------------------------------------------------ select / describe


@dataclass
class Step:
    name: str
    changed: bool


@dataclass
class Switch:
    plane: str
    steps: list[Step] = field(default_factory=list)

    def run(self, name: str, fn: Callable[[], bool]) -> None:
        self.steps.append(Step(name, bool(fn())))

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)


def select(lab_: Lab, plane: str, verify: bool = True) -> dict[str, Any]:
    """Put the lab into `plane` for the suite's services; return changed, steps and state."""
    check_plane(plane)
    sw = Switch(plane)
    # Off first (acceleration, sidecars, rules), then what the plane needs, so there is
    # never a moment with two planes serving the same VIP.
    if plane != "kmesh_node_accel":
        sw.run("acceleration off", lambda: set_acceleration(lab_, False))
    if plane != "sidecar":
        sw.run("sidecars stopped", lambda: sidecar_off(lab_))
    if plane in KUBE_PROXY:
        sw.run(f"kube-proxy {KUBE_PROXY[plane]}", lambda: kube_proxy_on(lab_, plane))
    else:
        sw.run("kube-proxy rules removed", lambda: kube_proxy_off(lab_))
    if plane in KMESH_PLANES:
        sw.run("agent serves the suite's services", lambda: enroll(lab_))
    else:
        sw.run("suite's services withdrawn from the agent", lambda: withdraw(lab_))
    if plane == "sidecar":
        sw.run("sidecars running", lambda: sidecar_on(lab_))
    if plane == "kmesh_node_accel":
        sw.run("acceleration on", lambda: set_acceleration(lab_, True))
    state = describe(lab_, plane)
    problems = check(state, plane) if verify else []
    if problems:
        raise PlaneError(f"after switching to {plane}: " + "; ".join(problems))
    return {
        "changed": sw.changed,
        "plane": plane,
        "steps": [{"step": s.name, "changed": s.changed} for s in sw.steps],
        "state": state,
    }


def describe(lab_: Lab, plane: str | None = None) -> dict[str, Any]:
    """What is in the kernel and running now (read, never assumed)."""
    svc = listing(Path(lab_.services_dir), lab_.prefix)
    kp = kube_proxy_state(lab_)
    agent = agent_state(lab_)
    side = sidecar_state(lab_)
    out: dict[str, Any] = {
        "data_plane": plane,
        "services": len(svc),
        "kube_proxy": kp,
        "agent": agent,
        "sidecar": side,
        "acceleration": bool(agent.get("acceleration")),
        "proxy": proxy_of(plane, side),
    }
    if plane in KUBE_PROXY:
        mode, backend = KUBE_PROXY[plane]
        key = "nftables" if mode == "nftables" else f"iptables_{backend}"
        out["kube_proxy_rules"] = kp["counts"][key]
    return out


def proxy_of(plane: str | None, side: dict[str, Any]) -> dict[str, Any] | None:
    """The userspace proxy on the data path (name + version), None when there is none."""
    if plane != "sidecar":
        return None
    return {"name": side.get("proxy"), "version": side.get("version")}


def check(state: dict[str, Any], plane: str) -> list[str]:
    """What is wrong with `state` for `plane` (empty = the lab is in exactly that plane)."""
    problems: list[str] = []
    agent, kp, side = state["agent"], state["kube_proxy"], state["sidecar"]
    kmesh = plane in KMESH_PLANES
    if kmesh and not agent.get("running"):
        problems.append("the agent is not running")
    if agent.get("running"):
        if kmesh and not agent["suite_files"]:
            problems.append("the suite's services are not in the agent's directory")
        if not kmesh and agent["suite_files"]:
            problems.append(f"the agent still serves {agent['suite_files']}")
        if plane == "kmesh_node_accel" and not agent.get("acceleration_enabled"):
            problems.append(
                f"the agent runs with {ACCEL_FLAG} but its status says acceleration is not "
                f"enabled in the kernel (hooks {agent['acceleration_hooks']})"
            )
        if agent["acceleration"] != (plane == "kmesh_node_accel"):
            problems.append(
                f"acceleration is {'on' if agent['acceleration'] else 'off'} "
                f"(flag {agent['accelerate_flag']}, hooks {agent['acceleration_hooks']})"
            )
    if plane in KUBE_PROXY:
        mode, backend = KUBE_PROXY[plane]
        rules = state.get("kube_proxy_rules", {})
        n = rules.get("rules" if mode == "nftables" else "kube_nat_rules", 0)
        if not n:
            problems.append(f"no kube-proxy {mode}/{backend} rules in {kp['netns']}")
    elif kp["rules_in_kernel"]:
        problems.append(f"{kp['rules_in_kernel']} kube-proxy rules are left in {kp['netns']}")
    if side.get("running") != (plane == "sidecar"):
        problems.append(f"sidecars {'running' if side.get('running') else 'not running'}")
    if plane == "sidecar" and not side.get("capture_rules"):
        problems.append("no sidecar capture rules in the pods' nat tables")
    if plane != "sidecar" and side.get("capture_rules"):
        problems.append(f"{side['capture_rules']} sidecar capture rules are left in the pods")
    if plane == "sidecar" and not (state["proxy"] or {}).get("name"):
        problems.append("the sidecar does not name its proxy")
    return problems


def prerequisite_missing(lab_: Lab, plane: str) -> str | None:
    """Why `plane` cannot be selected on this lab (None: it can); reads, changes nothing."""
    check_plane(plane)
    try:
        if plane in KUBE_PROXY:
            mode, backend = KUBE_PROXY[plane]
            needed = "nft" if mode == "nftables" else f"iptables-{backend}-restore"
            if shutil.which(needed) is None:
                return f"{plane}: {needed} is not installed (apt-get install iptables nftables)"
        elif plane == "sidecar":
            return _sidecar_missing()
        elif plane in KMESH_PLANES:
            argv = agent_argv(lab_.state_dir)
            if plane == "kmesh_node_accel" and not agent_supports_accelerate(argv):
                return (
                    f"{plane}: {argv[0]} has no {ACCEL_FLAG} flag (sockmap acceleration is "
                    "not in this agent yet); update kmesh_node or leave the plane out"
                )
    except PlaneError as exc:
        return str(exc)
    return None


def reset(lab_: Lab) -> dict[str, Any]:
    """No suite service served by anything, no rules, no sidecars, acceleration off."""
    return select(lab_, "pod_ip")


# ------------------------------------------------------------------ CLI


def add_lab_arguments(p: argparse.ArgumentParser) -> None:
    """Where the lab, the suite's services and the agent are (every command that switches)."""
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--services-dir", type=Path, required=True)
    p.add_argument("--agent-dir", type=Path, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--bpffs", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--sync-timeout", type=float, default=120.0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kmesh_lab.dataplane", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("planes", help="the plane names, one a line")
    for name in ("select", "describe", "reset"):
        p = sub.add_parser(name)
        add_lab_arguments(p)
        if name != "reset":
            p.add_argument("--plane", required=name == "select", choices=PLANES)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "planes":
        print("\n".join(PLANES))
        return 0
    try:
        lab_ = Lab(
            args.state_dir,
            args.services_dir,
            args.agent_dir,
            args.prefix,
            args.bpffs,
            args.metrics,
            args.sync_timeout,
        )
        if args.command == "select":
            out = select(lab_, args.plane)
        elif args.command == "reset":
            out = reset(lab_)
        else:
            out = describe(lab_, args.plane)
    except PlaneUnavailable as exc:
        print(f"dataplane {args.command}: {exc}", file=sys.stderr)
        return 3
    except (PlaneError, agentsample.AgentError, OSError, ValueError) as exc:
        print(f"dataplane {args.command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
