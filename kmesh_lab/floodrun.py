"""The flood suite's steps (roles/suite_flood calls one per task or loop item).

    python -m kmesh_lab.floodrun setup --stage JSON LAB-OPTIONS RECORD-OPTIONS
    python -m kmesh_lab.floodrun rep --stage JSON --block B --runs JSON LAB-OPTIONS RECORD-OPTIONS
    python -m kmesh_lab.floodrun compare --stage JSON --block B ... RECORD-OPTIONS
    python -m kmesh_lab.floodrun cleanup LAB-OPTIONS

setup: flood pods up, flood services written (kube-proxy's view and the agent's, see
kmesh_lab.floodlab), the agent synced, kube-proxy's iptables rules applied in ONE restore and
counted from the kernel, the targets' positions in KUBE-SERVICES read from the kernel; the
sysctls short-connection load needs are set (saved first, restored by cleanup). Records
`<stage>.setup`.

rep: one repetition of a block: every run of kmesh_lab.floodplan.schedule in order. Before
each run the plane is set (hooks on for iptables, off for the kmesh planes; read back from
the kernel) and the node's conntrack table is flushed (a direct connection and an earlier
DNAT'ed one with the same ports would clash there). The load is tools/fortio.sh in the client
pod, or tools/connrate.c for the connection rate (kmesh_lab.connrate); the node's CPU is
sampled from /proc/stat every 0.5 s (its maximum is the thesis' "max node CPU"). Runs
already recorded for this repetition are skipped (resume).

compare: per rate, the A/B verdict (kmesh_lab.floodstats) on per-repetition p50 latency and
max node CPU; per block, the new-connection rate's ratio kmesh / iptables against the target
(4x) -- recorded, never asserted here -- and the HTTP-request throughput's ratio beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kmesh_lab import (
    agentsample,
    cgroups,
    connrate,
    floodhooks,
    floodlab,
    floodplan,
    floodstats,
    lab,
    loadgen,
    results,
    servicestep,
)

REPO = Path(__file__).resolve().parents[1]
SUITE = "suite_flood"
THROUGHPUT_TARGET = 4.0  # acceptance: kmesh_node >= 4x iptables-nft at 10,000 services
CONF = int(floodstats.CONFIDENCE * 100)
PERCENTILES = "5,25,50,75,95,99"
CLIENT_SYSCTLS = {"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "1024 65535"}
# The servers close first (Connection: close), so their TIME_WAIT sockets would meet new
# SYNs on reused ports; timestamps of a VIP connection and of a direct one have different
# offsets, so PAWS drops the SYN and the client waits 1 s. No TIME_WAIT on the servers.
SERVER_SYSCTLS = {"net.ipv4.tcp_max_tw_buckets": "0"}
MECHANISM = {"pod_ip_hooked": True, "pod_ip_unhooked": False}
THROUGHPUT_MEASURES = {
    "connrate": "TCP connections per second: connect + close (RST), no data (netperf TCP_CC)",
    "throughput": "HTTP requests per second, one request per connection (keepalive off)",
}
EXPERIMENTS = {
    "setup": ["flood.setup"],
    "latency": ["flood.latency", "flood.cpu"],
    "throughput": ["flood.setup"],
}


class FloodError(RuntimeError):
    """A flood step could not be done; the message names the fix."""


# ------------------------------------------------------------------ helpers


def _state(args: argparse.Namespace) -> dict[str, Any]:
    return lab.load_state(args.state_dir)


def _ns_sysctl(netns: str, key: str, value: str | None = None) -> str:
    argv = ["ip", "netns", "exec", netns, "sysctl", "-n", key]
    if value is not None:
        argv = ["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise FloodError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}")
    return " ".join(proc.stdout.split())


def set_sysctls(args: argparse.Namespace, state: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Set the load's sysctls in the client and server pods; save the old values once."""
    saved_path = floodlab.flood_dir(args.state_dir) / "sysctls.json"
    saved: dict[str, dict[str, str]] = (
        json.loads(saved_path.read_text()) if saved_path.is_file() else {}
    )
    for pod in state["pods"].values():
        wanted = CLIENT_SYSCTLS if pod["role"] == "client" else SERVER_SYSCTLS
        old = saved.setdefault(pod["netns"], {})
        for key, value in wanted.items():
            old.setdefault(key, _ns_sysctl(pod["netns"], key))
            _ns_sysctl(pod["netns"], key, value)
    saved_path.parent.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(json.dumps(saved, indent=2) + "\n")
    return saved


def restore_sysctls(state_dir: Path) -> int:
    path = floodlab.flood_dir(state_dir) / "sysctls.json"
    if not path.is_file():
        return 0
    restored = 0
    for netns, values in json.loads(path.read_text()).items():
        for key, value in values.items():
            try:
                _ns_sysctl(netns, key, value)
                restored += 1
            except FloodError:
                pass  # the pod is gone with its namespace: nothing to restore
    path.unlink()
    return restored


def flush_conntrack(node_ns: str) -> None:
    argv = ["ip", "netns", "exec", node_ns, "conntrack", "-F"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    # conntrack -F exits 1 with "0 flow entries" on an empty table on some versions
    if proc.returncode not in (0, 1):
        raise FloodError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}; install conntrack")


class NodeCpu:
    """Samples the node's busy CPU (% of all cores) from /proc/stat every `interval` s."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]), idle  # user..steal (guest is inside user)

    def _loop(self) -> None:
        last = self.read()
        while not self._stop.wait(self.interval):
            now = self.read()
            total, idle = now[0] - last[0], now[1] - last[1]
            if total > 0:
                self.samples.append(100.0 * (total - idle) / total)
            last = now

    def __enter__(self) -> NodeCpu:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def agent_state(args: argparse.Namespace) -> dict[str, Any]:
    """What the agent is running with, read from the process and its metrics."""
    agent = agentsample.Agent(args.bpffs, args.metrics, args.pid_file)
    pid = agent.pid()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return {
        "agent_pid": pid,
        "agent_accelerate": b"--accelerate" in argv,
        "agent_services": agentsample.services(agent),
    }


def lab_cpu_usec(state: dict[str, Any]) -> int:
    """CPU used by the lab's client and server pods (cgroup v2 usage_usec)."""
    layout = cgroups.detect()
    return sum(cgroups.usage_usec(layout, p["cgroup"]) for p in state["pods"].values())


# ------------------------------------------------------------------ setup


def do_setup(args: argparse.Namespace) -> dict[str, Any]:
    stage = floodplan.stage_from(args.stage_name, json.loads(args.stage))
    state = _state(args)
    if stage.throughput_s > 0:  # before the flood: a missing compiler fails in seconds
        connrate.build(floodlab.flood_dir(args.state_dir) / "bin")
    agent = agentsample.Agent(args.bpffs, args.metrics, args.pid_file)
    baseline = servicestep.base_services(args.manifests_dir)
    started = time.monotonic()
    pods = floodlab.pods_up(args.state_dir, stage.pods)
    written = floodlab.write_services(stage, args.state_dir, args.manifests_dir, pods["addresses"])
    t0 = time.monotonic()
    expected = baseline + written["agent_file_services"]
    agentsample.wait_services(agent, expected, args.sync_timeout, poll=0.5)
    agent_sync_s = time.monotonic() - t0
    applied = floodlab.apply_rules(args.state_dir, args.backend)
    save = subprocess.run(
        ["ip", "netns", "exec", state["node_ns"], f"iptables-{args.backend}-save", "-t", "nat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    positions = {
        plane: floodhooks.kube_services_position(save, t["key"])
        for plane, t in written["targets"].items()
    }
    if positions["iptables"] is None:
        raise FloodError(
            f"the iptables target {written['targets']['iptables']['key']} has no rule in the "
            "kernel's KUBE-SERVICES after the apply; look at "
            f"{floodlab.kube_manifests_dir(args.state_dir)}"
        )
    set_sysctls(args, state)
    counts = applied["counts"]
    sample = {
        "repetition": 1,
        "pods": pods["pods"],
        "pods_s": pods["pods_s"],
        "services": stage.services,
        "endpoints_per_service": stage.endpoints,
        "agent_services": agentsample.services(agent),
        "agent_sync_s": round(agent_sync_s, 3),
        "write_s": written["write_s"],
        "apply_s": applied["apply_s"],
        "apply_changed": applied["changed"],
        # counted from the kernel (iptables-save), never computed
        "iptables_rules": counts["rules"],
        "iptables_nat_rules": counts["nat_rules"],
        "kube_nat_rules": counts["kube_nat_rules"],
        "kube_chains": counts["kube_chains"],
        "iptables_entries": counts["rules"] + counts["kube_chains"],
        "kube_services_rules": positions["iptables"]["rules"],
        "ipt_target_rule_position": positions["iptables"]["position"],
        "rule_counts_from": f"iptables-{args.backend}-save in {state['node_ns']}",
        "setup_s": round(time.monotonic() - started, 3),
        "accel_available": args.accel_available,
    }
    params = {
        "stage": stage.name,
        "pods": stage.pods,
        "services": stage.services,
        "endpoints_per_service": stage.endpoints,
        "backend": args.backend,
        "target_position": stage.target_position,
        "targets": written["targets"],
        "blocks": list(stage.blocks),
    }
    _record(args, f"{stage.name}.setup", params, sample, EXPERIMENTS["setup"], replace=True)
    return {"stage": stage.name, "sample": sample}


# ------------------------------------------------------------------ one repetition


def set_plane(plane: str, node_ns: str, backend: str) -> dict[str, Any]:
    hooked = plane == "iptables" or MECHANISM.get(plane, False)
    return floodhooks.hook(node_ns, backend) if hooked else floodhooks.unhook(node_ns, backend)


def run_load(
    state_dir: Path, client: str, url: str, load: list[str], bound_s: float
) -> loadgen.LoadResult:
    with tempfile.TemporaryDirectory(prefix="kmfl-flood-") as tmp:
        out = Path(tmp) / "load.json"
        argv = [str(servicestep.PODEXEC), client, "--", str(servicestep.FORTIO), "load"]
        argv += [*load, "-json", str(out), url]
        env = {**os.environ, "KMESH_LAB_STATE": str(state_dir)}
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=bound_s)
        if proc.returncode != 0 and not out.is_file():
            raise FloodError(f"the load against {url} failed: {proc.stderr.strip()[-600:]}")
        return loadgen.parse(out)


def measure(args: argparse.Namespace, stage: floodplan.Stage, run: dict[str, Any]) -> dict:
    state = _state(args)
    setup = _setup_params(args, stage)
    node_ns = state["node_ns"]
    plane = run["plane"]
    hooks = set_plane(plane, node_ns, args.backend)
    agent = agent_state(args)
    want_accel = plane == "kmesh_node_accel"
    if plane.startswith("kmesh_node") and agent["agent_accelerate"] != want_accel:
        raise FloodError(
            f"plane {plane} needs the agent {'with' if want_accel else 'without'} --accelerate, "
            f"but it runs {'with' if agent['agent_accelerate'] else 'without'} it; the role "
            f"restarts it per block (kmesh_node_accelerate)"
        )
    if plane in MECHANISM:
        server = next(p for p in state["pods"].values() if p["role"] == "server")
        url = f"http://{server['address']}/"
    else:
        target = setup["targets"][plane]
        url = f"http://{target['vip']}:{target['port']}/"
    if run["kind"] == "connect":
        return _connects(args, stage, run, state, url, hooks, agent)
    flush_conntrack(node_ns)
    usec0 = lab_cpu_usec(state)
    t0 = time.monotonic()
    with NodeCpu() as cpu:
        if run["kind"] == "connrate":
            sample = run_connrate(args, stage, _host_port(url))
        else:
            sample = run_http(args, stage, run, url)
    wall = time.monotonic() - t0
    lab_cpu = (lab_cpu_usec(state) - usec0) / 1e6
    sample.update(
        {
            "repetition": run["repetition"],
            "order_in_repetition": run["order"],
            "mean_ms": sample.get("avg_ms"),
            "max_node_cpu_pct": max(cpu.samples) if cpu.samples else None,
            "mean_node_cpu_pct": statistics.fmean(cpu.samples) if cpu.samples else None,
            "node_cpu_samples": len(cpu.samples),
            "lab_pods_cpu_pct_node": 100.0 * lab_cpu / wall / (os.cpu_count() or 1),
            # the host is shared: its load when the run ended says how quiet it was
            "host_loadavg_1m": os.getloadavg()[0],
            "url": url,
            **hooks,
            **agent,
        }
    )
    return {k: v for k, v in sample.items() if v is not None}


def run_http(args: argparse.Namespace, stage: floodplan.Stage, run: dict, url: str) -> dict:
    """The load wrapper from the client pod: a latency run at its rate, or as fast as it goes
    with one request per connection (a throughput run)."""
    if run["kind"] == "throughput":
        seconds = stage.throughput_s
        load = ["-c", str(stage.throughput_connections), "-qps", "0", "-keepalive=false"]
    else:
        seconds = stage.duration_s
        load = ["-c", str(args.connections), "-qps", str(run["rate"])]
        load.append(f"-keepalive={'true' if run['keepalive'] else 'false'}")
    load += ["-t", f"{seconds}s", "-timeout", args.timeout, "-p", PERCENTILES]
    result = run_load(args.state_dir, args.client, url, load, seconds + 60)
    sample = result.to_sample()
    if run["kind"] == "throughput":  # one request per connection: requests = connections
        sample["connections_per_s"] = result.ok / result.duration_s if result.duration_s else 0.0
    return sample


def _host_port(url: str) -> str:
    target = url.removeprefix("http://").rstrip("/")
    return target if ":" in target else f"{target}:80"


def run_connrate(args: argparse.Namespace, stage: floodplan.Stage, target: str) -> dict:
    """TCP connect + close from the client pod for throughput_s (tools/connrate.c)."""
    binary = connrate.build(floodlab.flood_dir(args.state_dir) / "bin")
    timeout_ms = max(1, round(servicestep.loadgen_seconds(args.timeout) * 1000))
    load = connrate.argv(
        binary, target, stage.throughput_s, stage.throughput_connections, timeout_ms
    )
    argv = [str(servicestep.PODEXEC), args.client, "--", *load]
    env = {**os.environ, "KMESH_LAB_STATE": str(args.state_dir)}
    bound = stage.throughput_s + timeout_ms / 1000 + 30
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=bound)
    if proc.returncode not in (0, 1):
        raise FloodError(f"connrate against {target} failed: {proc.stderr.strip()[-400:]}")
    out = connrate.parse(proc.stdout)
    # "ok" as in the load wrapper's samples: what completed (here: connections)
    return {**out, "ok": out["connections"], "runner": "connrate (TCP connect + close)"}


def _connects(
    args: argparse.Namespace,
    stage: floodplan.Stage,
    run: dict[str, Any],
    state: dict[str, Any],
    url: str,
    hooks: dict[str, Any],
    agent: dict[str, Any],
) -> dict[str, Any]:
    """Timed connect()s from the client pod (kmesh_lab.connectprobe): the first-packet
    round trip, which the load wrapper's latencies do not include."""
    target = _host_port(url)
    flush_conntrack(state["node_ns"])
    argv = [str(servicestep.PODEXEC), args.client, "--", sys.executable, "-m"]
    argv += ["kmesh_lab.connectprobe", "--target", target, "--count", str(stage.connects)]
    env = {**os.environ, "KMESH_LAB_STATE": str(args.state_dir), "PYTHONPATH": str(REPO)}
    bound = stage.connects * 2.1 + 60
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=bound)
    if proc.returncode != 0:
        raise FloodError(f"the connect probe against {target} failed: {proc.stderr[-400:]}")
    sample = json.loads(proc.stdout.strip().splitlines()[-1])
    sample.update(
        {
            "repetition": run["repetition"],
            "order_in_repetition": run["order"],
            "ok": sample["count"],
            "url": url,
            "host_loadavg_1m": os.getloadavg()[0],
            **hooks,
            **agent,
        }
    )
    return sample


def _setup_params(args: argparse.Namespace, stage: floodplan.Stage) -> dict[str, Any]:
    for rec in results.read_records(args.run_dir, SUITE):
        if rec["scenario"] == f"{stage.name}.setup":
            return rec["params"]
    raise FloodError(f"no {stage.name}.setup record in {args.run_dir}: run the setup step first")


def _params(stage: floodplan.Stage, run: dict[str, Any], args: argparse.Namespace) -> dict:
    plane = run["plane"]
    params: dict[str, Any] = {
        "stage": stage.name,
        "block": run["block"],
        "data_plane": "pod_ip" if plane in MECHANISM else plane,
        "plane": plane,
        "kind": run["kind"],
        "pods": stage.pods,
        "services": stage.services,
        "endpoints_per_service": stage.endpoints,
        "backend": args.backend,
        "kube_proxy_rules": "loaded; hooked"
        if plane == "iptables" or MECHANISM.get(plane)
        else "loaded; unhooked",
        "target_position": stage.target_position,
        "conntrack_flushed_before_run": True,
    }
    if run["kind"] == "connect":
        params.update({"connects": stage.connects, "probe": "kmesh_lab.connectprobe"})
    elif run["kind"] in floodplan.THROUGHPUT_KINDS:
        params.update(
            {
                "duration_s": stage.throughput_s,
                "connections": stage.throughput_connections,
                "keepalive": False,
                "measure": THROUGHPUT_MEASURES[run["kind"]],
            }
        )
    else:
        params.update(
            {
                "rps": run["rate"],
                "keepalive": run["keepalive"],
                "duration_s": stage.duration_s,
                "connections": args.connections,
                "timeout": args.timeout,
            }
        )
    return params


def do_rep(args: argparse.Namespace) -> dict[str, Any]:
    stage = floodplan.stage_from(args.stage_name, json.loads(args.stage))
    runs = json.loads(args.runs)
    measured, skipped = [], []
    for run in runs:
        scenario = run["scenario"]
        if servicestep.samples_recorded(args.run_dir, SUITE, scenario) >= run["repetition"]:
            skipped.append(scenario)
            continue
        sample = measure(args, stage, run)
        if sample.get("ok", 0) == 0:
            raise FloodError(
                f"{scenario}: no request answered ({sample.get('ret_codes')}); look at the "
                f"agent's log and `tools/podexec.sh {args.client} -- curl {sample.get('url')}`"
            )
        kind = "latency" if run["kind"] == "latency" else "throughput"
        _record(args, scenario, _params(stage, run, args), sample, EXPERIMENTS[kind])
        brief = {"scenario": scenario}
        for key in ("p50_ms", "connect_p50_us", "qps", "connections_per_s"):
            if key in sample:
                brief[key] = round(sample[key], 4)
        measured.append(brief)
    return {"measured": measured, "skipped": skipped}


# ------------------------------------------------------------------ compare


def _values(recs: dict[str, dict], scenario: str, key: str) -> list[float]:
    rec = recs.get(scenario)
    if rec is None:
        return []
    return [float(s[key]) for s in rec["samples"] if key in s]


def do_compare(args: argparse.Namespace) -> dict[str, Any]:
    stage = floodplan.stage_from(args.stage_name, json.loads(args.stage))
    recs = {r["scenario"]: r for r in results.read_records(args.run_dir, SUITE)}
    out: list[dict[str, Any]] = []
    for block in stage.blocks:
        a_plane, b_plane = floodplan.BLOCKS[block]
        for keepalive in stage.keepalive:
            for rate in stage.rates:
                a = floodplan.scenario_name(stage.name, block, a_plane, "latency", rate, keepalive)
                b = floodplan.scenario_name(stage.name, block, b_plane, "latency", rate, keepalive)
                for metric, unit in (
                    ("p50_ms", "ms"),
                    ("mean_ms", "ms"),
                    ("max_node_cpu_pct", "%"),
                    # the lab pods' own CPU (cgroups): the node's is shared with other work
                    ("lab_pods_cpu_pct_node", "%"),
                ):
                    av, bv = _values(recs, a, metric), _values(recs, b, metric)
                    if len(av) < 3 or len(bv) < 3:
                        continue
                    cmp = floodstats.compare(a_plane, av, b_plane, bv, metric, unit)
                    params = {
                        "stage": stage.name,
                        "block": block,
                        "a": a_plane,
                        "b": b_plane,
                        "rps": rate,
                        "keepalive": keepalive,
                        "metric": metric,
                        "compared": [a, b],
                    }
                    ka = "on" if keepalive else "off"
                    name = (
                        f"{stage.name}.compare.{b_plane}_vs_{a_plane}.rps={rate}.ka={ka}.{metric}"
                    )
                    _record(args, name, params, cmp, ["flood.latency"], replace=True)
                    out.append({"scenario": name, "statement": cmp["statement"]})
        if stage.connects > 0:
            out.append(_connect_verdict(args, stage, block, a_plane, b_plane, recs))
        if stage.throughput_s > 0:
            for kind in floodplan.THROUGHPUT_KINDS:
                out.append(_throughput_ratio(args, stage, block, a_plane, b_plane, recs, kind))
    if "base" in stage.blocks and (stage.throughput_s > 0 or stage.connects > 0):
        out.append(_mechanism(args, stage, recs))
    return {"comparisons": out}


def _throughput_ratio(
    args: argparse.Namespace,
    stage: floodplan.Stage,
    block: str,
    a_plane: str,
    b_plane: str,
    recs: dict[str, dict],
    kind: str,
) -> dict[str, Any]:
    """Throughput of b_plane over a_plane (iptables). The target is the new-connection
    rate's (kind connrate: `<stage>.throughput_ratio...`); the HTTP runs' ratio is recorded
    beside it (`<stage>.http_throughput_ratio...`): their request and response, the same on
    both planes, add to every connection's cost and so dilute the ratio."""
    a = floodplan.scenario_name(stage.name, block, a_plane, kind)
    b = floodplan.scenario_name(stage.name, block, b_plane, kind)
    prefix = "throughput_ratio" if kind == "connrate" else "http_throughput_ratio"
    name = f"{stage.name}.{prefix}.{b_plane}_vs_{a_plane}"
    av, bv = _values(recs, a, "connections_per_s"), _values(recs, b, "connections_per_s")
    if len(av) < 3 or len(bv) < 3:
        return {"scenario": name, "skipped": "fewer than 3 runs"}
    cmp = floodstats.compare(a_plane, av, b_plane, bv, "connections_per_s", "conn/s", False)
    low, high = floodstats.ratio_ci(av, bv)
    ratio = statistics.median(bv) / statistics.median(av)
    setup = recs.get(f"{stage.name}.setup", {}).get("samples", [{}])[0]
    # the pairs ran back to back: a per-pair ratio cancels the shared host's slow drift
    by_rep = {s["repetition"]: s["connections_per_s"] for s in recs[a]["samples"]}
    pairs = [
        s["connections_per_s"] / by_rep[s["repetition"]]
        for s in recs[b]["samples"]
        if by_rep.get(s["repetition"])
    ]
    what = {
        "connrate": "new-connection throughput (TCP connect + close)",
        "throughput": "short HTTP requests per second (one per connection)",
    }[kind]
    statement = (
        f"{what} through {b_plane} is {ratio:.2f}x that of iptables-{args.backend} "
        f"kube-proxy rules ({CONF}% CI {low:.2f}..{high:.2f}x) with {stage.services} services "
        f"({setup.get('kube_services_rules')} KUBE-SERVICES rules counted in the kernel, the "
        f"target's at position {setup.get('ipt_target_rule_position')}); median of the "
        f"{len(pairs)} back-to-back pairs' ratios "
        f"{statistics.median(pairs) if pairs else float('nan'):.2f}x"
    )
    if kind == "connrate":
        met = "met" if ratio >= THROUGHPUT_TARGET else "NOT met"
        statement += f"; target {THROUGHPUT_TARGET:g}x: {met}."
    else:
        statement += (
            "; the HTTP exchange, the same on both planes, is part of every connection's "
            "cost here, so this ratio is below the connection rate's."
        )
    sample = {
        **cmp,
        "measure": THROUGHPUT_MEASURES[kind],
        "pair_ratios": pairs,
        "paired_ratio_median": statistics.median(pairs) if pairs else None,
        "ratio": ratio,
        "ratio_ci_low": low,
        "ratio_ci_high": high,
        "iptables_entries": setup.get("iptables_entries"),
        "kube_services_rules": setup.get("kube_services_rules"),
        "ipt_target_rule_position": setup.get("ipt_target_rule_position"),
        "statement_ratio": statement,
    }
    if kind == "connrate":
        sample["target_ratio"] = THROUGHPUT_TARGET
        sample["meets_target"] = ratio >= THROUGHPUT_TARGET
    params = {
        "stage": stage.name,
        "block": block,
        "a": a_plane,
        "b": b_plane,
        "services": stage.services,
        "connections": stage.throughput_connections,
        "duration_s": stage.throughput_s,
        "keepalive": False,
        "kind": kind,
        "compared": [a, b],
    }
    _record(args, name, params, sample, ["flood.setup"], replace=True)
    return {"scenario": name, "statement": sample["statement_ratio"]}


def _mechanism(args: argparse.Namespace, stage: floodplan.Stage, recs: dict[str, dict]) -> dict:
    """Connections to a pod IP (no service) with kube-proxy's hooks in and out: the price
    of the linear KUBE-SERVICES walk on every first packet, measured (connect time and
    new-connection throughput)."""
    found: dict[str, Any] = {}
    for kind, metric, unit, lower in (
        ("connect", "connect_p50_us", "us", True),
        ("connrate", "connections_per_s", "conn/s", False),
        ("throughput", "connections_per_s", "conn/s", False),
    ):
        a = floodplan.scenario_name(stage.name, "base", "pod_ip_unhooked", kind)
        b = floodplan.scenario_name(stage.name, "base", "pod_ip_hooked", kind)
        av, bv = _values(recs, a, metric), _values(recs, b, metric)
        if len(av) < 3 or len(bv) < 3:
            continue
        cmp = floodstats.compare("pod_ip_unhooked", av, "pod_ip_hooked", bv, metric, unit, lower)
        params = {
            "stage": stage.name,
            "a": "pod_ip_unhooked",
            "b": "pod_ip_hooked",
            "metric": metric,
            "compared": [a, b],
        }
        name = f"{stage.name}.mechanism.pod_ip_hooked_vs_unhooked.{kind}"
        _record(args, name, params, cmp, ["flood.setup"], replace=True)
        found[name] = cmp["statement"]
    return {"mechanism": found}


def _connect_verdict(
    args: argparse.Namespace,
    stage: floodplan.Stage,
    block: str,
    a_plane: str,
    b_plane: str,
    recs: dict[str, dict],
) -> dict[str, Any]:
    a = floodplan.scenario_name(stage.name, block, a_plane, "connect")
    b = floodplan.scenario_name(stage.name, block, b_plane, "connect")
    av, bv = _values(recs, a, "connect_p50_us"), _values(recs, b, "connect_p50_us")
    if len(av) < 3 or len(bv) < 3:
        return {"scenario": f"{stage.name}.{block}.connect", "skipped": "fewer than 3 runs"}
    cmp = floodstats.compare(a_plane, av, b_plane, bv, "connect_p50_us", "us")
    params = {
        "stage": stage.name,
        "block": block,
        "a": a_plane,
        "b": b_plane,
        "metric": "connect_p50_us",
        "compared": [a, b],
    }
    name = f"{stage.name}.compare.{b_plane}_vs_{a_plane}.connect.connect_p50_us"
    _record(args, name, params, cmp, ["flood.latency"], replace=True)
    return {"scenario": name, "statement": cmp["statement"]}


# ------------------------------------------------------------------ acceleration


def _dataplane_lab(args: argparse.Namespace) -> Any:
    """kmesh_lab.dataplane's view of this lab: its agent restart with/without --accelerate
    is reused as is (same argv as the kmesh_node role, plus or minus the flag)."""
    from kmesh_lab import dataplane

    return dataplane.Lab(
        state_dir=args.state_dir,
        services_dir=floodlab.kube_manifests_dir(args.state_dir),
        agent_dir=args.manifests_dir,
        prefix=floodlab.AGENT_FILE.split("-")[0],
        bpffs=args.bpffs,
        metrics=args.metrics,
        sync_timeout=args.sync_timeout,
    )


def do_accel(args: argparse.Namespace) -> dict[str, Any]:
    from kmesh_lab import dataplane

    lab_ = _dataplane_lab(args)
    started = time.monotonic()
    try:
        changed = dataplane.set_acceleration(lab_, args.on)
    except dataplane.PlaneError as exc:
        raise FloodError(str(exc)) from exc
    state = dataplane.agent_state(lab_)
    if args.on and not state.get("acceleration_enabled"):
        raise FloodError(
            f"the agent runs with --accelerate but its status says acceleration is not enabled "
            f"(hooks {state.get('acceleration_hooks')}); look at its log in {args.state_dir}/logs"
        )
    return {"changed": changed, "restart_s": round(time.monotonic() - started, 3), "agent": state}


# ------------------------------------------------------------------ cleanup


def do_cleanup(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"changed": False}
    if not (Path(args.state_dir) / "lab.json").is_file():
        return out
    state = _state(args)
    out["sysctls_restored"] = restore_sysctls(args.state_dir)
    out["agent_file_removed"] = floodlab.remove_agent_file(args.manifests_dir)
    rules = floodlab.remove_rules(args.state_dir)
    out["rules_removed"] = rules["removed"]
    out["pods_removed"] = floodlab.pods_down(args.state_dir, state["prefix"])
    out["state_removed"] = floodlab.remove_state(args.state_dir)
    agent = agentsample.Agent(args.bpffs, args.metrics, args.pid_file)
    baseline = servicestep.base_services(args.manifests_dir)
    agentsample.wait_services(agent, baseline, args.sync_timeout, poll=0.5)
    out["agent_services"] = baseline
    out["kube_rules_left"] = floodhooks.summary(
        floodhooks.read_jumps(state["node_ns"], args.backend)
    )
    out["changed"] = bool(
        out["agent_file_removed"] or rules["removed"] or out["pods_removed"] or out["state_removed"]
    )
    return out


# ------------------------------------------------------------------ CLI


def _record(
    args: argparse.Namespace,
    scenario: str,
    params: dict[str, Any],
    sample: dict[str, Any],
    experiments: list[str],
    replace: bool = False,
) -> None:
    lab_info = json.loads(args.lab) if args.lab else None
    if replace:
        rec = results.make_record(
            SUITE, scenario, params, [sample], experiments, expected_samples=1, lab=lab_info
        )
        results.write_records(args.run_dir, SUITE, [rec])
        return
    results.append_samples(
        args.run_dir,
        SUITE,
        scenario,
        [sample],
        params=params,
        experiments=experiments,
        expected_samples=args.repetitions,
        lab=lab_info,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.floodrun", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    names = ("setup", "rep", "compare", "cleanup", "accel")
    cmds = {name: sub.add_parser(name) for name in names}
    for name, p in cmds.items():
        p.add_argument("--state-dir", type=Path, required=True)
        p.add_argument("--manifests-dir", type=Path, required=True)
        p.add_argument("--bpffs", required=True)
        p.add_argument("--metrics", required=True)
        p.add_argument("--pid-file", type=Path, required=True)
        p.add_argument("--backend", choices=("nft", "legacy"), default="nft")
        p.add_argument("--sync-timeout", type=float, default=300.0)
        if name in ("cleanup", "accel"):
            continue
        p.add_argument("--stage-name", required=True)
        p.add_argument("--stage", required=True, help="the stage's profile dict as JSON")
        p.add_argument("--run-dir", type=Path, required=True)
        p.add_argument("--lab", help="JSON kept as environment.lab")
        p.add_argument("--repetitions", type=int, default=5)
    cmds["setup"].add_argument("--accel-available", action="store_true")
    onoff = cmds["accel"].add_mutually_exclusive_group(required=True)
    onoff.add_argument("--on", action="store_true", help="restart the agent with --accelerate")
    onoff.add_argument("--off", action="store_true", help="restart it without")
    rep = cmds["rep"]
    rep.add_argument("--runs", required=True, help="JSON list of runs (floodplan.schedule)")
    rep.add_argument("--client", default="client-0")
    rep.add_argument("--connections", type=int, default=8)
    rep.add_argument("--timeout", default="2s", help="per request (the thesis' 2 s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "setup":
            out = do_setup(args)
        elif args.command == "rep":
            out = do_rep(args)
        elif args.command == "compare":
            out = do_compare(args)
        elif args.command == "accel":
            out = do_accel(args)
        else:
            out = do_cleanup(args)
    except (
        FloodError,
        floodplan.PlanError,
        floodhooks.HookError,
        floodstats.StatsError,
        agentsample.AgentError,
        results.ResultsError,
        loadgen.LoadResultError,
        RuntimeError,
        ValueError,
        OSError,
        subprocess.SubprocessError,
    ) as exc:
        print(f"floodrun {args.command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
