"""The latency suite's runner (seed 004): prepare, one block of loads, cleanup.

    python -m kmesh_lab.latency prepare LAB-OPTIONS --client POD --count N --start I
        [--endpoints K] [--planes P,...] [--on-missing fail|skip] RECORD-OPTIONS
    python -m kmesh_lab.latency block --block JSON LAB-OPTIONS --client POD --raw-dir D
        RECORD-OPTIONS
    python -m kmesh_lab.latency cleanup LAB-OPTIONS --client POD

LAB-OPTIONS are kmesh_lab.dataplane's (--state-dir --services-dir --agent-dir --prefix
--bpffs --metrics [--sync-timeout]); RECORD-OPTIONS: --run-dir --suite --repetitions --lab.

`prepare` writes the suite's services (N services from index I, K endpoints each on the lab's
server pods) into the suite's OWN directory (--services-dir, never watched by the agent),
tunes the client pod for many short connections (tcp_tw_reuse=1 and a wide ip_local_port_range
with the sidecar ports reserved, in its namespace; the old values are kept to be put back) and
says which planes lack a prerequisite (dataplane.prerequisite_missing): with --on-missing fail
it stops before anything is measured (exit 3, naming what is missing and the fix), with skip
it records `missing.<plane>` (no samples, params.missing = the reason) and leaves the plane
out of the planes it prints. It also withdraws suite files an interrupted run left in the
agent's directory and prints the agent's own service count (the cleanup's baseline). `block`
(one block of kmesh_lab.latencyplan) puts the lab into the block's plane
(kmesh_lab.dataplane.select) and runs its loads from the client pod through tools/fortio.sh
against the first service (its VIP, or for pod_ip its endpoint), recording each as soon as it
is measured; a scenario that already has this repetition (a resumed run) is skipped, and a
block with nothing left does not switch the plane. `cleanup` puts the lab back: no suite
service served by anything (dataplane.reset: rules removed, sidecars stopped, acceleration
off, files out of the agent's directory), the client's sysctls as they were, the suite's
directory removed.

Figures of one load (windows of wall time W on a node of N CPUs):
    p50_ms, p90_ms, p99_ms, qps, errors   the load generator's (kmesh_lab.loadgen)
    client_cpu_pct_*, server_cpu_pct_*    cgroup v2 usage_usec of the client / server pods
    proxy_cpu_pct_*                       utime+stime of the sidecar's proxy processes
    proxy_cpu_max_pct_core, proxy_rss_max_bytes   the busiest single sidecar (Istio's view)
    app_cpu_pct_*                         client + server pods minus proxies inside them
    total_cpu_pct_*                       app + proxies: everything the request path costs
    ebpf_cpu_pct_*  (CPU loads only)      run time of the agent's programs (kmesh-node top)
The eBPF time is part of the app's: the hooks run in the connecting task, so the kernel
charges them to its pod (as in kmesh_lab.cpuload). *_pct_core = % of one core, *_pct_node
= that / N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmesh_lab import agentsample, cgroups, dataplane, loadgen, netns, procstat, results, services

REPO = Path(__file__).resolve().parents[1]
PODEXEC = REPO / "tools" / "podexec.sh"
FORTIO = REPO / "tools" / "fortio.sh"
PERCENTILES = "50,90,99,99.9"
TUNING = {  # many short connections to one VIP from one pod (ANCHORS.md)
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.ip_local_port_range": "1024 65535",
    # ...but never the sidecar's listening ports (Istio's 15000-15090): a TIME_WAIT socket a
    # block left on 15001 made the next sidecar block's HAProxy fail to bind
    "net.ipv4.ip_local_reserved_ports": "15000-15090",
}
TUNING_FILE = "client_tuning.json"  # beside --services-dir: the values before the suite
WARMUP_S = 0.5  # CPU loads: the window starts after the load generator is up


class SuiteError(RuntimeError):
    """A load could not be run or measured; the message names the fix."""


# ------------------------------------------------------------------ client tuning


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def read_sysctl(netns_name: str, key: str) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", netns_name, "cat", _sysctl_path(key)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return " ".join(out.split())  # ip_local_port_range reads back tab-separated


def write_sysctl(netns_name: str, key: str, value: str) -> bool:
    if read_sysctl(netns_name, key) == " ".join(value.split()):
        return False
    subprocess.run(
        ["ip", "netns", "exec", netns_name, "sysctl", "-qw", f"{key}={value}"],
        capture_output=True,
        check=True,
    )
    return True


def tune(state: dict[str, Any], pod: str, saved: Path) -> dict[str, Any]:
    """Set TUNING in the pod's namespace; keep the values found first (a resumed run must
    not mistake its own tuning for the lab's)."""
    ns = state["pods"][pod]["netns"]
    if not saved.is_file():
        before = {k: read_sysctl(ns, k) for k in TUNING}
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"netns": ns, "values": before}))
    changed = [k for k, v in TUNING.items() if write_sysctl(ns, k, v)]
    return {"netns": ns, "set": TUNING, "changed": changed}


def untune(saved: Path) -> list[str]:
    if not saved.is_file():
        return []
    kept = json.loads(saved.read_text())
    changed: list[str] = []
    if kept["netns"] in netns.namespaces():
        changed = [k for k, v in kept["values"].items() if write_sysctl(kept["netns"], k, v)]
    saved.unlink()
    return changed


# ------------------------------------------------------------------ CPU accounting


@dataclass(frozen=True)
class Snapshot:
    monotonic: float
    groups: dict[str, int]  # pod -> cgroup v2 usage_usec
    procs: dict[int, float]  # proxy PID -> utime+stime seconds
    rss: dict[int, int] = field(default_factory=dict)  # proxy PID -> VmRSS bytes


def pod_groups(state: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """pod -> (role, cgroup)."""
    return {name: (p["role"], p["cgroup"]) for name, p in state["pods"].items()}


def snapshot(
    layout: cgroups.Layout, groups: dict[str, tuple[str, str]], pids: list[int]
) -> Snapshot:
    procs: dict[int, float] = {}
    rss: dict[int, int] = {}
    for pid in pids:
        try:
            read = procstat.read(pid)
        except procstat.ProcError:
            continue  # a proxy worker that exited; its CPU until then is lost
        procs[pid], rss[pid] = read.cpu_s, read.rss_bytes
    return Snapshot(
        time.monotonic(),
        {pod: cgroups.usage_usec(layout, grp) for pod, (_r, grp) in groups.items()},
        procs,
        rss,
    )


def pid_cgroup(pid: int) -> str | None:
    """The cgroup v2 path of a process (relative, no leading /), None when gone."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip("/")
    return None


def cpu_figures(
    a: Snapshot,
    b: Snapshot,
    groups: dict[str, tuple[str, str]],
    proxy_groups: dict[int, str | None],
    ncpu: int,
    proxy_pods: dict[int, str] | None = None,
) -> dict[str, float]:
    """CPU of the client pods, server pods and proxies between two snapshots (see the
    module doc). `proxy_groups` maps a proxy PID to its cgroup (relative path),
    `proxy_pods` to the pod whose sidecar it is (for the busiest single sidecar)."""
    wall = b.monotonic - a.monotonic
    if wall <= 0:
        raise SuiteError("the CPU window has no length: the clock did not advance")

    def core_usec(usec: float) -> float:
        return usec / (wall * 1e6) * 100.0

    client = sum(b.groups[p] - a.groups[p] for p, (r, _) in groups.items() if r == "client")
    server = sum(b.groups[p] - a.groups[p] for p, (r, _) in groups.items() if r == "server")
    pod_cgroups = {grp for _r, grp in groups.values()}
    proxy_s = 0.0
    inside_s = 0.0
    per_pod: dict[str, float] = {}
    for pid, cpu in b.procs.items():
        if pid not in a.procs:
            continue
        used = max(0.0, cpu - a.procs[pid])
        proxy_s += used
        pod = (proxy_pods or {}).get(pid, str(pid))
        per_pod[pod] = per_pod.get(pod, 0.0) + used
        grp = proxy_groups.get(pid)
        if grp is not None and any(grp == g or grp.startswith(g + "/") for g in pod_cgroups):
            inside_s += used
    out = {
        "cpu_window_s": wall,
        "client_cpu_pct_core": core_usec(client),
        "server_cpu_pct_core": core_usec(server),
        "proxy_cpu_pct_core": proxy_s / wall * 100.0,
        "app_cpu_pct_core": max(0.0, core_usec(client + server) - inside_s / wall * 100.0),
    }
    out["total_cpu_pct_core"] = out["app_cpu_pct_core"] + out["proxy_cpu_pct_core"]
    if per_pod:
        # one sidecar's cost, as Istio's benchmark reports it (vCPU of the busiest proxy)
        out["proxy_cpu_max_pct_core"] = max(per_pod.values()) / wall * 100.0
    if b.rss:
        rss_pod: dict[str, int] = {}
        for pid, rss in b.rss.items():
            pod = (proxy_pods or {}).get(pid, str(pid))
            rss_pod[pod] = rss_pod.get(pod, 0) + rss
        out["proxy_rss_bytes"] = float(sum(rss_pod.values()))
        out["proxy_rss_max_bytes"] = float(max(rss_pod.values()))
    for key in list(out):
        if key.endswith("_pct_core"):
            out[key.replace("_pct_core", "_pct_node")] = out[key] / ncpu
    return out


# ------------------------------------------------------------------ one load


def fortio_argv(pod: str, m: dict[str, Any], url: str, out: Path) -> list[str]:
    p = m["params"]
    conns = p.get("connections") or p["client_connections"]
    argv = [str(PODEXEC), pod, "--", str(FORTIO), "load", "-c", str(conns)]
    argv += ["-t", f"{p['duration_s']}s", "-qps", str(p["qps"]), "-p", PERCENTILES]
    if not p["keepalive"]:
        argv.append("-keepalive=false")
    return [*argv, "-json", str(out), url]


def run_load(
    args: argparse.Namespace,
    state: dict[str, Any],
    m: dict[str, Any],
    url: str,
    out: Path,
    proxies: list[int],
    pods_of: dict[int, str] | None = None,
) -> dict[str, Any]:
    """One load with its CPU window; for CPU loads also the agent's eBPF run time."""
    layout = cgroups.detect()
    groups = pod_groups(state)
    proxy_groups = {pid: pid_cgroup(pid) for pid in proxies}
    ncpu = os.cpu_count() or 1
    env = {**os.environ, "KMESH_LAB_STATE": str(args.state_dir)}
    duration = float(m["params"]["duration_s"])
    ebpf: dict[str, Any] | None = None
    with subprocess.Popen(
        fortio_argv(args.client, m, url, out),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            if m["kind"] == "cpu":
                time.sleep(WARMUP_S)
                a = snapshot(layout, groups, proxies)
                # the agent's programs over most of the load (top's own start is ~0.3 s)
                window = max(0.5, duration - WARMUP_S - 1.0)
                # top reads the pins only; the agent's PID file is not needed for it
                agent = agentsample.Agent(args.bpffs, args.metrics, Path("/nonexistent"))
                ebpf = agentsample.bpf_memory(agentsample.top(agent, window))
                b = snapshot(layout, groups, proxies)
            else:
                a = snapshot(layout, groups, proxies)
            _, err = proc.communicate(timeout=duration + 60)
            if m["kind"] != "cpu":
                b = snapshot(layout, groups, proxies)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0 and not out.is_file():
        raise SuiteError(f"the load to {url} failed ({proc.returncode}): {err.strip()[-400:]}")
    load = loadgen.parse(out)
    if load.ok == 0:
        raise SuiteError(
            f"no request to {url} succeeded in {m['params']['data_plane']} "
            f"(codes {load.ret_codes}): the plane does not route the service; look at "
            f"`python -m kmesh_lab.dataplane describe` and the lab's logs"
        )
    sample = load.to_sample()
    sample["error_pct"] = load.errors / max(1, load.count + load.errors) * 100.0
    sample.update(cpu_figures(a, b, groups, proxy_groups, ncpu, pods_of))
    if m["kind"] == "cpu":
        # "equal QPS" holds only while every plane carries the rate: say how far it did
        sample["qps_held_pct"] = load.qps / float(m["params"]["qps"]) * 100.0
    if ebpf is not None:
        sample["ebpf_cpu_pct_core"] = ebpf["bpf_cpu_pct_core"]
        sample["ebpf_cpu_pct_node"] = ebpf["bpf_cpu_pct_node"]
        sample["ebpf_runs_per_s"] = ebpf["bpf_runs"] / max(ebpf["bpf_window_s"], 1e-9)
        sample["ebpf_window_s"] = ebpf["bpf_window_s"]
    return sample


# ------------------------------------------------------------------ recording

_ENV: dict[str, Any] = {}


def host_environment() -> dict[str, Any]:
    """results.environment(), read once per process (it runs a dozen commands)."""
    if not _ENV:
        _ENV.update(results.environment())
    return dict(_ENV)


def plane_environment(plane: str, st: dict[str, Any]) -> dict[str, Any]:
    """What the data plane was, as read from the kernel and the processes after the switch."""
    kp = st["kube_proxy"]
    out: dict[str, Any] = {
        "name": plane,
        "acceleration": st["acceleration"],
        "proxy": st["proxy"],
        "kube_proxy_rules_in_kernel": kp["rules_in_kernel"],
        "kube_proxy_counts": kp["counts"],
        "kube_proxy_legacy_tables_left": kp["legacy_tables_left"],
        "agent": st["agent"],
        "sidecar": st["sidecar"],
    }
    if plane in dataplane.KUBE_PROXY:
        out["kube_proxy_rules"] = st["kube_proxy_rules"]
    else:
        # the rules themselves are removed (not only the jumps), counted 0 in the kernel
        out["kube_proxy"] = "rules removed (KUBE-* chains, jumps and table ip kube-proxy)"
    return out


def plane_params(plane: str, st: dict[str, Any]) -> dict[str, Any]:
    kp = dataplane.KUBE_PROXY.get(plane)
    return {
        "acceleration": st["acceleration"],
        "kube_proxy": "/".join(kp) if kp else None,
        "proxy": (st["proxy"] or {}).get("name"),
        "target": "pod_ip" if plane == "pod_ip" else "service_vip",
    }


def samples_recorded(run_dir: Path | None, suite: str, scenario: str) -> int:
    if run_dir is None:
        return 0
    for rec in results.read_records(run_dir, suite):
        if rec["scenario"] == scenario:
            return len(rec["samples"])
    return 0


def record(
    args: argparse.Namespace,
    m: dict[str, Any],
    params: dict[str, Any],
    sample: dict[str, Any],
    env_plane: dict[str, Any],
) -> None:
    if args.run_dir is None:
        return
    lab_info = json.loads(args.lab) if args.lab else None
    if samples_recorded(args.run_dir, args.suite, m["scenario"]) == 0:
        env = {**host_environment(), "data_plane": env_plane}
        rec = results.make_record(
            args.suite,
            m["scenario"],
            params,
            [sample],
            m["experiments"],
            env=env,
            expected_samples=args.repetitions,
            lab=lab_info,
        )
        results.write_records(args.run_dir, args.suite, [rec])
    else:
        results.append_samples(
            args.run_dir,
            args.suite,
            m["scenario"],
            [sample],
            params=params,
            experiments=m["experiments"],
            expected_samples=args.repetitions,
        )


# ------------------------------------------------------------------ commands


def _lab(args: argparse.Namespace) -> dataplane.Lab:
    return dataplane.Lab(
        args.state_dir,
        args.services_dir,
        args.agent_dir,
        args.prefix,
        args.bpffs,
        args.metrics,
        args.sync_timeout,
    )


def proxy_pids(sidecar: dict[str, Any]) -> list[int]:
    """The sidecar's proxy PIDs from its description: a list, or {pod: [pids]}."""
    pids = sidecar.get("pids") or []
    if isinstance(pids, dict):
        pids = [p for v in pids.values() for p in (v if isinstance(v, list) else [v])]
    return sorted({int(p) for p in pids})


def proxy_pods(sidecar: dict[str, Any]) -> dict[int, str]:
    """PID -> the pod whose sidecar it is (master and workers), when the description says."""
    pids = sidecar.get("pids") or {}
    if not isinstance(pids, dict):
        return {}
    return {int(p): pod for pod, v in pids.items() for p in (v if isinstance(v, list) else [v])}


def do_prepare(args: argparse.Namespace) -> dict[str, Any]:
    lab_ = _lab(args)
    state = lab_.state()
    servers = [p["address"] for p in state["pods"].values() if p["role"] == "server"]
    if args.client not in state["pods"]:
        raise SuiteError(f"no pod {args.client!r} in the lab: pods are {sorted(state['pods'])}")
    planes = [x for x in args.planes.split(",") if x]
    for plane in planes:
        dataplane.check_plane(plane)
    missing = {p: why for p in planes if (why := dataplane.prerequisite_missing(lab_, p))}
    if missing and args.on_missing == "fail":
        raise dataplane.PlaneUnavailable(
            "; ".join(missing.values())
            + " -- leave these planes out (suite_latency_planes) or set "
            "suite_latency_on_missing_plane=skip to record them as missing"
        )
    try:
        docs, listing = services.manifests(args.start, args.count, servers, args.endpoints, 80)
    except ValueError as exc:
        raise SuiteError(str(exc)) from exc
    path = Path(args.services_dir) / f"{args.prefix}.yaml"
    old = path.read_bytes() if path.is_file() else None
    services.write(Path(args.services_dir), args.prefix, docs)
    changed = old != path.read_bytes()
    # what an interrupted run left in the agent's directory goes before the baseline is read
    changed |= dataplane.withdraw(lab_)
    tuning = tune(state, args.client, Path(args.services_dir).parent / TUNING_FILE)
    for plane, why in missing.items():
        record_missing(args, plane, why)
    return {
        "changed": changed or bool(tuning["changed"]),
        "services": listing,
        "tuning": tuning,
        "missing": missing,
        "planes": [p for p in planes if p not in missing],
        "agent_services": agentsample.services(lab_.agent),
    }


def record_missing(args: argparse.Namespace, plane: str, why: str) -> None:
    """A record without samples that says why a plane was not measured."""
    if args.run_dir is None:
        return
    rec = results.make_record(
        args.suite,
        f"missing.{plane}",
        {"data_plane": plane, "missing": why},
        [],
        env=host_environment(),
        lab=json.loads(args.lab) if args.lab else None,
    )
    results.write_records(args.run_dir, args.suite, [rec])


def do_block(args: argparse.Namespace) -> dict[str, Any]:
    blk = json.loads(args.block)
    rep, plane = int(blk["repetition"]), blk["plane"]
    pending = [
        m
        for m in blk["measurements"]
        if samples_recorded(args.run_dir, args.suite, m["scenario"]) < rep
    ]
    out: dict[str, Any] = {"index": blk.get("index"), "plane": plane, "repetition": rep}
    if not pending:
        return {**out, "measured": 0, "already": len(blk["measurements"])}
    lab_ = _lab(args)
    state = lab_.state()
    t0 = time.monotonic()
    switched = dataplane.select(lab_, plane)
    switch_s = time.monotonic() - t0
    st = switched["state"]
    svc = dataplane.listing(Path(args.services_dir), args.prefix)
    if not svc:
        raise SuiteError(f"no suite services in {args.services_dir}: run `prepare` first")
    url = f"http://{dataplane.target(plane, svc[0])}/"
    proxies = proxy_pids(st["sidecar"]) if plane == "sidecar" else []
    if plane == "sidecar" and not proxies:
        raise SuiteError("the sidecar names no proxy PIDs: its CPU cannot be measured")
    raw = Path(args.raw_dir)
    raw.mkdir(parents=True, exist_ok=True)
    env_plane = plane_environment(plane, st)
    extra = plane_params(plane, st)
    points: list[dict[str, Any]] = []
    for m in pending:
        file = raw / f"{m['scenario']}.rep{rep}.json"
        sample = run_load(args, state, m, url, file, proxies, proxy_pods(st["sidecar"]))
        sample.update(
            {
                "repetition": rep,
                "block": blk.get("index"),
                "switch_s": round(switch_s, 3),
                "kube_proxy_rules_in_kernel": st["kube_proxy"]["rules_in_kernel"],
                "url": url,
            }
        )
        params = {**m["params"], **extra, "client": args.client, "service": svc[0]["name"]}
        record(args, m, params, sample, env_plane)
        points.append(
            {
                "scenario": m["scenario"],
                **{k: round(sample.get(k, 0.0), 3) for k in ("p50_ms", "p90_ms", "p99_ms")},
                "qps": round(sample["qps"], 1),
                "total_cpu_pct_node": round(sample["total_cpu_pct_node"], 2),
            }
        )
    return {
        **out,
        "measured": len(points),
        "switch_changed": switched["changed"],
        "switch_s": round(switch_s, 3),
        "points": points,
    }


def do_cleanup(args: argparse.Namespace) -> dict[str, Any]:
    """Everything back, each part tried even when one before it failed."""
    errors: list[str] = []
    out: dict[str, Any] = {"changed": False}
    try:
        reset = dataplane.reset(_lab(args))
        out["reset_steps"] = reset["steps"]
        out["changed"] |= reset["changed"]
    except (dataplane.PlaneError, agentsample.AgentError, OSError, ValueError) as exc:
        errors.append(f"reset: {exc}")
    try:
        out["untuned"] = untune(Path(args.services_dir).parent / TUNING_FILE)
        out["changed"] |= bool(out["untuned"])
    except (OSError, subprocess.CalledProcessError) as exc:
        errors.append(f"client sysctls: {exc}")
    path = Path(args.services_dir)
    if path.is_dir():
        for f in path.glob("*"):
            f.unlink()
        path.rmdir()
        out["changed"] = True
    # the suite's directory (services + saved sysctls) goes too once it holds nothing
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()
    if errors:
        raise SuiteError("; ".join(errors))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.latency", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("prepare", "block", "cleanup"):
        p = sub.add_parser(name)
        dataplane.add_lab_arguments(p)
        p.add_argument("--client", default="client-0", help="the pod that runs the loads")
        if name == "prepare":
            p.add_argument("--count", type=int, required=True)
            p.add_argument("--start", type=int, required=True)
            p.add_argument("--endpoints", type=int, default=1)
            p.add_argument("--planes", default="", help="planes whose prerequisites to check")
            p.add_argument("--on-missing", choices=("fail", "skip"), default="fail")
        if name == "block":
            p.add_argument("--block", required=True, help="one block of kmesh_lab.latencyplan")
            p.add_argument("--raw-dir", required=True, help="where each load's JSON goes")
        if name in ("prepare", "block"):
            p.add_argument("--run-dir", type=Path, help="record into RUN_DIR/SUITE.json")
            p.add_argument("--suite", default="suite_latency")
            p.add_argument("--repetitions", type=int, help="samples each scenario needs")
            p.add_argument("--lab", help="JSON kept in the record's environment")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prepare":
            out = do_prepare(args)
        elif args.command == "block":
            out = do_block(args)
        else:
            out = do_cleanup(args)
    except dataplane.PlaneUnavailable as exc:
        print(f"latency {args.command}: {exc}", file=sys.stderr)
        return 3
    except (
        SuiteError,
        dataplane.PlaneError,
        agentsample.AgentError,
        loadgen.LoadResultError,
        results.ResultsError,
        procstat.ProcError,
        OSError,
        subprocess.CalledProcessError,
    ) as exc:
        print(f"latency {args.command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
