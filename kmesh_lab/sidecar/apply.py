"""Put the sidecar into the lab's pods, reload it when services change, remove it.

    python -m kmesh_lab.sidecar apply --manifests-dir D [--state-dir S] [--pods a,b]
        [--uid 1337 --gid 1337] [--backend nft|legacy] [proxy settings...]
    python -m kmesh_lab.sidecar remove [--state-dir S]
    python -m kmesh_lab.sidecar stats --pod P [--state-dir S]

`apply`, per meshed pod: renders the routes map and the pod's haproxy.cfg (checked with
`haproxy -c` before use), starts HAProxy in master-worker mode inside the pod (its netns
and cgroup, via kmesh_lab.daemon, as the proxy user) or reloads it with SIGUSR2 when its
config or the map changed (same master PID, old workers finish their connections), then
installs istio-iptables' capture in the pod's nat table — proxy first, so no connection is
redirected to a port nobody listens on. Pods no longer meshed are unmeshed. The result is
written to STATE_DIR/peer_sidecar.json, which the suites read ({plane, proxy, version,
pods, ports, ...}). Every command prints one JSON object; `changed` is true only when a
process, a file or the kernel changed. Rule counts are read back from the kernel.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from kmesh_lab import daemon, lab, netns
from kmesh_lab.kube_proxy_apply import iptables_save
from kmesh_lab.sidecar import capture, haproxy, routes

STATE_FILE = "peer_sidecar.json"
PLANE = "sidecar"
BACKENDS = ("nft", "legacy")
RELOAD_TIMEOUT_S = 10.0


def files_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "sidecar"


def run_dir(state_dir: Path) -> Path:
    """Owned by the proxy user: HAProxy (not root) creates its stats sockets here."""
    return files_dir(state_dir) / "run"


def config_path(state_dir: Path, pod: str) -> Path:
    return files_dir(state_dir) / f"{pod}.cfg"


def map_path(state_dir: Path) -> Path:
    return files_dir(state_dir) / "routes.map"


def stats_socket(state_dir: Path, pod: str) -> Path:
    return run_dir(state_dir) / f"{pod}.sock"


def daemon_name(pod: str) -> str:
    return f"sidecar-{pod}"


def state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def read_state(state_dir: Path) -> dict[str, Any]:
    path = state_path(state_dir)
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}  # a torn file only costs one reload


def _write(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def _ns(netns_name: str, *argv: str, stdin: str | None = None) -> str:
    cmd = ["ip", "netns", "exec", netns_name, *argv]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (rc {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def haproxy_version(binary: str) -> str:
    try:
        proc = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise RuntimeError(
            f"{binary!r} not found: install Debian's haproxy (the host_setup role does)"
        ) from None
    return haproxy.parse_version(proc.stdout + proc.stderr)


def check_config(binary: str, path: Path) -> None:
    proc = subprocess.run([binary, "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"HAProxy refuses {path}: {(proc.stdout + proc.stderr).strip()[-2000:]}")


def proxy_argv(binary: str, uid: int, gid: int, config: Path) -> list[str]:
    """HAProxy in master-worker mode in the foreground, as the proxy user (its sockets then
    carry that uid, which istio-iptables' `-m owner` rules exempt from capture)."""
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        binary,
        "-W",
        "-db",
        "-f",
        str(config),
    ]


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            out.add(int(stat.parent.name))
    return out


def reload(pid: int, log: Path) -> None:
    """SIGUSR2 to the master; done when a new worker runs (old ones drain and exit)."""
    before = children(pid)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        if children(pid) - before:
            return
        time.sleep(0.05)
    raise RuntimeError(f"HAProxy master {pid} started no new worker after SIGUSR2; see {log}")


# --- capture -----------------------------------------------------------------------------


def capture_rules_in_kernel(netns_name: str, backend: str) -> int:
    return len(capture.saved_rules(iptables_save(netns_name, backend)))


def remove_capture(netns_name: str) -> list[str]:
    """Delete ISTIO_* chains and jumps of both backends; returns the backends touched."""
    removed: list[str] = []
    for backend in BACKENDS:
        text = capture.removal_input(iptables_save(netns_name, backend))
        if text:
            _ns(netns_name, f"iptables-{backend}-restore", "--noflush", stdin=text)
            removed.append(backend)
    # iptables-nft leaves an empty `ip nat` table behind: delete it when no rule is left.
    proc = subprocess.run(
        ["ip", "netns", "exec", netns_name, "nft", "-j", "list", "table", "ip", "nat"],
        capture_output=True,
        text=True,
    )
    if proc.returncode == 0 and not any("rule" in o for o in json.loads(proc.stdout)["nftables"]):
        _ns(netns_name, "nft", "delete", "table", "ip", "nat")
    return removed


def apply_capture(netns_name: str, cfg: capture.Capture, backend: str, applied: str) -> bool:
    """Install the capture unless the kernel holds the same render (`applied` = its digest
    recorded last time and the rule count matches); returns whether the kernel changed."""
    text = capture.restore_text(cfg)
    digest = hashlib.sha256(text.encode()).hexdigest()
    if applied == digest and capture_rules_in_kernel(netns_name, backend) == capture.rule_count(
        cfg
    ):
        return False
    remove_capture(netns_name)
    _ns(netns_name, f"iptables-{backend}-restore", "--noflush", stdin=text)
    return True


# --- apply / remove ----------------------------------------------------------------------


def _pods(state: dict[str, Any], wanted: list[str] | None) -> list[str]:
    known = state["pods"]
    if not wanted:
        return sorted(p for p, e in known.items() if e.get("role") in ("client", "server"))
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise ValueError(
            f"peer_sidecar_pods names pods this lab does not have: {unknown}; "
            f"its pods are {sorted(known)}"
        )
    return sorted(set(wanted))


def unmesh(state_dir: Path, pod: str, netns_name: str | None) -> dict[str, Any]:
    stopped = daemon.stop(state_dir, daemon_name(pod))
    removed = remove_capture(netns_name) if netns_name in netns.namespaces() else []
    config_path(state_dir, pod).unlink(missing_ok=True)
    return {"stopped": stopped, "rules_removed": removed}


def apply(
    state_dir: Path,
    manifests_dir: Path,
    wanted_pods: list[str] | None,
    settings: haproxy.Settings,
    cfg: capture.Capture,
    backend: str,
    binary: str = "haproxy",
) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise ValueError(f"iptables backend {backend!r}: use one of {BACKENDS}")
    if (settings.outbound_port, settings.inbound_port) != (
        cfg.proxy_port,
        cfg.inbound_capture_port,
    ):
        raise ValueError("the capture must redirect to the proxy's outbound/inbound ports")
    try:
        user = pwd.getpwuid(cfg.proxy_uid).pw_name
    except KeyError:
        raise RuntimeError(
            f"no user has uid {cfg.proxy_uid}: create the proxy user (the peer_sidecar role "
            "does) or pass the uid of an existing one"
        ) from None
    state_dir = Path(state_dir)
    lab_state = lab.load_state(state_dir)
    pods = _pods(lab_state, wanted_pods)
    # One spelling of the binary (the role passes a path, the suites a name): the daemon
    # restarts a process whose argv changed, and a restart would drop connections.
    binary = shutil.which(binary) or binary
    version = haproxy_version(binary)
    loaded = routes.load(Path(manifests_dir))
    previous = read_state(state_dir)

    files_dir(state_dir).mkdir(parents=True, exist_ok=True)
    run_dir(state_dir).mkdir(exist_ok=True)
    os.chown(run_dir(state_dir), cfg.proxy_uid, cfg.proxy_gid)
    run_dir(state_dir).chmod(0o750)
    changed = _write(map_path(state_dir), haproxy.render_map(loaded.routes))
    map_text = map_path(state_dir).read_text()

    result_pods: dict[str, Any] = {}
    unmeshed: dict[str, Any] = {}
    for pod in sorted(set(previous.get("pods", {})) - set(pods)):
        entry = lab_state["pods"].get(pod, {})
        unmeshed[pod] = unmesh(state_dir, pod, entry.get("netns"))
        changed = True
    for pod in pods:
        entry = lab_state["pods"][pod]
        text = haproxy.render_config(
            pod, loaded.routes, settings, stats_socket(state_dir, pod), map_path(state_dir)
        )
        path = config_path(state_dir, pod)
        if _write(path, text):
            changed = True
            check_config(binary, path)
        digest = hashlib.sha256((text + map_text).encode()).hexdigest()
        before = previous.get("pods", {}).get(pod, {})
        argv = proxy_argv(binary, cfg.proxy_uid, cfg.proxy_gid, path)
        started = daemon.start(
            state_dir, daemon_name(pod), argv, pod=pod, ready_port=settings.outbound_port
        )
        pid = daemon.running(state_dir, daemon_name(pod))
        assert pid is not None  # start() raised otherwise
        reloaded = False
        if not started and before.get("digest") != digest:
            reload(pid, state_dir / "logs" / f"{daemon_name(pod)}.log")
            reloaded = True
        captured = apply_capture(entry["netns"], cfg, backend, before.get("capture_digest", ""))
        changed |= started or reloaded or captured
        result_pods[pod] = {
            "netns": entry["netns"],
            "address": entry.get("address", ""),
            "role": entry.get("role", ""),
            "pid": pid,
            "config": str(path),
            "stats_socket": str(stats_socket(state_dir, pod)),
            "digest": digest,
            "capture_digest": hashlib.sha256(capture.restore_text(cfg).encode()).hexdigest(),
            "capture_rules": capture_rules_in_kernel(entry["netns"], backend),
            "started": started,
            "reloaded": reloaded,
        }
    state = {
        "plane": PLANE,
        "proxy": haproxy.PROXY_NAME,
        "version": version,
        "binary": binary,
        "user": user,
        "uid": cfg.proxy_uid,
        "gid": cfg.proxy_gid,
        "ports": {
            "outbound": settings.outbound_port,
            "inbound": settings.inbound_port,
            "stats": settings.stats_port,
            "tunnel": cfg.inbound_tunnel_port,
        },
        "settings": asdict(settings),
        "capture": {
            "iptables_backend": backend,
            "rules_per_pod": capture.rule_count(cfg),
            "inbound_ports_include": cfg.inbound_ports_include,
            "inbound_ports_exclude": list(cfg.inbound_ports_exclude),
            "outbound_ip_ranges_include": list(cfg.outbound_ip_ranges_include),
        },
        "manifests_dir": str(manifests_dir),
        "manifests_sha256": loaded.digest,
        "services": len({r.service for r in loaded.routes}),
        "routes": len(loaded.routes),
        "http_routes": sum(r.mode == "http" for r in loaded.routes),
        "endpoints": sum(len(r.endpoints) for r in loaded.routes),
        "skipped": loaded.skipped,
        "pods": result_pods,
    }
    _write(state_path(state_dir), json.dumps(state, indent=2, sort_keys=True) + "\n")
    # `started`/`reloaded` describe this run only: not part of what makes a 2nd run changed.
    return {"changed": changed, "unmeshed": unmeshed, **state}


def remove(state_dir: Path) -> dict[str, Any]:
    """Unmesh every pod the state file or the lab names; safe when never installed."""
    state_dir = Path(state_dir)
    recorded = read_state(state_dir).get("pods", {})
    try:
        lab_pods = lab.load_state(state_dir)["pods"]
    except RuntimeError:
        lab_pods = {}
    targets = {p: e.get("netns") for p, e in recorded.items()}
    targets.update({p: e.get("netns") for p, e in lab_pods.items()})
    done: dict[str, Any] = {}
    changed = False
    for pod, ns in sorted(targets.items()):
        result = unmesh(state_dir, pod, ns)
        if result["stopped"] or result["rules_removed"]:
            done[pod] = result
            changed = True
    for path in (state_path(state_dir), files_dir(state_dir)):
        if path.is_dir():
            shutil.rmtree(path)
            changed = True
        elif path.exists():
            path.unlink()
            changed = True
    return {"changed": changed, "removed": done}


def stats(state_dir: Path, pod: str, timeout: float = 5.0) -> dict[str, Any]:
    """The pod's proxy counters (`show stat` over its stats socket)."""
    path = stats_socket(state_dir, pod)
    if not path.exists():
        raise RuntimeError(f"no sidecar stats socket {path}: is the sidecar running in {pod}?")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return haproxy.parse_stat(data.decode())


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of port numbers") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.sidecar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("apply", help="mesh the pods (start/reload proxies, capture)")
    r = sub.add_parser("remove", help="stop every sidecar, remove every capture rule")
    s = sub.add_parser("stats", help="a pod's proxy counters")
    for p in (a, r, s):
        p.add_argument("--state-dir", type=Path, default=lab.DEFAULT_STATE_DIR)
    s.add_argument("--pod", required=True)
    a.add_argument("--manifests-dir", type=Path, required=True)
    a.add_argument("--pods", default="", help="comma-separated pods (default: every pod)")
    a.add_argument("--uid", type=int, default=1337)
    a.add_argument("--gid", type=int, default=1337)
    a.add_argument("--backend", choices=BACKENDS, default="nft")
    a.add_argument("--haproxy", default="haproxy")
    d = haproxy.Settings()
    a.add_argument("--outbound-port", type=int, default=d.outbound_port)
    a.add_argument("--inbound-port", type=int, default=d.inbound_port)
    a.add_argument("--stats-port", type=int, default=d.stats_port)
    a.add_argument("--threads", type=int, default=d.threads)
    a.add_argument("--maxconn", type=int, default=d.maxconn)
    a.add_argument("--balance", default=d.balance)
    a.add_argument("--log-level", default=d.log_level)
    a.add_argument("--timeout-connect", default=d.timeout_connect)
    a.add_argument("--timeout-idle", default=d.timeout_idle)
    a.add_argument(
        "--inbound-exclude",
        default=",".join(str(p) for p in capture.DEFAULT_INBOUND_EXCLUDE),
        help="inbound ports never captured (istio-iptables -d)",
    )
    a.add_argument("--outbound-ranges", default="*", help="'*' or CIDRs (istio-iptables -i)")
    args = parser.parse_args(argv)
    try:
        if args.command == "remove":
            result = remove(args.state_dir)
        elif args.command == "stats":
            result = stats(args.state_dir, args.pod)
        else:
            settings = haproxy.Settings(
                outbound_port=args.outbound_port,
                inbound_port=args.inbound_port,
                stats_port=args.stats_port,
                threads=args.threads,
                maxconn=args.maxconn,
                balance=args.balance,
                log_level=args.log_level,
                timeout_connect=args.timeout_connect,
                timeout_idle=args.timeout_idle,
            )
            cfg = capture.Capture(
                proxy_port=args.outbound_port,
                inbound_capture_port=args.inbound_port,
                proxy_uid=args.uid,
                proxy_gid=args.gid,
                inbound_ports_exclude=_ints(args.inbound_exclude),
                outbound_ip_ranges_include=tuple(
                    c.strip() for c in args.outbound_ranges.split(",") if c.strip()
                ),
            )
            pods = [p.strip() for p in args.pods.split(",") if p.strip()]
            result = apply(
                args.state_dir,
                args.manifests_dir,
                pods or None,
                settings,
                cfg,
                args.backend,
                args.haproxy,
            )
        print(json.dumps(result))
        return 0
    except (ValueError, RuntimeError, OSError, yaml.YAMLError, subprocess.SubprocessError) as exc:
        print(f"peer_sidecar: {exc}", file=sys.stderr)
        return 2
