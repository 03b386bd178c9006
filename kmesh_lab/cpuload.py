"""One measurement of the CPU suite (seeds 000/001): load from app instances to a Service VIP,
with the apps' CPU from cgroup accounting and the agent's eBPF CPU from kernel run-time
stats, sampled over the same windows.

    python -m kmesh_lab.cpuload measure --url http://VIP:PORT/ --bpffs DIR --out FILE
        [--state-dir D] [--apps N] [--app-cpu-m M] [--connections C] [--warmup S]
        [--windows K] [--window S] [--probe-url URL] [--probe-interval S] [--raw-dir DIR]
        [--tag NAME]

What one call does:
1. creates N app instances (kmesh_lab.cpugroups, `cpu-app-<i>`, limit M millicores each,
   0 = none) spread over the lab's client pods, and `cpu-probe` when a probe is asked for;
2. starts, in each instance, `tools/fortio.sh load -c C -qps 0 -keepalive=false` (the
   seeds' load) in the pod's network namespace (`cpugroups exec`, podexec's way), for
   warmup + K windows + 1 s;
3. after the warm-up, for each window of S seconds reads, at both ends: every instance's
   cgroup v2 cpu.stat (usage, user, system), /proc/stat (the node), and run_time_ns /
   run_cnt of every program pinned under the agent's bpffs (BPF run-time stats switched on
   for the windows only, as `kmesh-node top` does; each window's report is kept in
   --raw-dir in `kmesh-node top --json` format);
4. waits for the loads, reads their fortio-format JSON, and writes a JSON list of samples,
   one per window, to --out (for `python -m kmesh_lab.results record --sample-file`).

Figures, per window (wall time W, N CPUs on the node):
    pod_cpu_pct_core  = delta usage_usec of the instances / W * 100   (app + its eBPF: the
                        connect hooks run in the connecting task, so the kernel accounts
                        their time to the pod -- what its limit throttles)
    ebpf_cpu_pct_core = delta run_time_ns of all agent programs / W * 100   (bpftop's figure)
    app_cpu_pct_core  = pod_cpu_pct_core - ebpf_cpu_pct_core   (the app's own share)
    *_pct_node        = *_pct_core / N
    within_limit      = every instance used <= its limit * (1 + 0.1 s / W): CFS enforces the
                        quota per 0.1 s period, so a window's edges may hold one period more.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmesh_lab import cgroups, cpugroups, lab, loadgen, probe

REPO_ROOT = Path(__file__).resolve().parents[1]
CFS_PERIOD_S = cgroups.CFS_PERIOD_US / 1e6


class MeasureError(RuntimeError):
    """A load or a reading failed; the message says which and what to look at."""


@dataclass(frozen=True)
class Instance:
    name: str  # cpugroups instance name, e.g. app-0
    pod: str  # lab pod whose network namespace it uses
    cpu_m: int  # CPU limit in millicores, 0 = none


def plan_instances(client_pods: Sequence[str], apps: int, cpu_m: int) -> list[Instance]:
    """`apps` instances app-0..app-(N-1), spread round-robin over the lab's client pods."""
    if apps < 0:
        raise ValueError(f"--apps {apps}: use 0 (probe/idle only) or more")
    if apps and not client_pods:
        raise ValueError("the lab has no client pods: bring it up with netns_lab_clients >= 1")
    pods = sorted(client_pods)
    return [Instance(f"app-{i}", pods[i % len(pods)], cpu_m) for i in range(apps)]


# ------------------------------------------------------------------ readings


def parse_cpu_stat(text: str) -> dict[str, int]:
    """usage_usec, user_usec, system_usec from the text of a cgroup v2 cpu.stat."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in ("usage_usec", "user_usec", "system_usec"):
            out[key] = int(value)
    if "usage_usec" not in out:
        raise MeasureError(f"cpu.stat has no usage_usec: {text[:80]!r} (kernel too old?)")
    return out


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of the node from the text of /proc/stat (first "cpu" line)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            vals = [int(v) for v in line.split()[1:]]
            # user nice system idle iowait irq softirq steal [guest guest_nice: in user]
            total = sum(vals[:8])
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
            return total - idle, total
    raise MeasureError("/proc/stat has no aggregate 'cpu' line")


def node_busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total * 100.0 if total > 0 else 0.0


# ------------------------------------------------------------------ figures


def window_sample(
    wall_s: float,
    ncpu: int,
    instances: Sequence[Instance],
    deltas: Mapping[str, Mapping[str, int]],
    programs: Sequence[Mapping[str, Any]],
    node_busy_pct_node: float,
) -> dict[str, Any]:
    """The figures of one window (see the module doc). `deltas` maps instance name to the
    cpu.stat deltas (usec); `programs` are per-program rates with name, cpu_pct_core,
    delta_run_time_ns, delta_run_cnt (kmesh_node.stats.program_rates + names)."""
    if wall_s <= 0:
        raise MeasureError(f"window of {wall_s} s: the clock did not advance")
    wall_us = wall_s * 1e6

    def core(usec: float) -> float:
        return usec / wall_us * 100.0

    ebpf_ns = sum(int(p["delta_run_time_ns"]) for p in programs)
    ebpf_runs = sum(int(p["delta_run_cnt"]) for p in programs)
    c4 = [p for p in programs if "connect4" in str(p.get("name", ""))]
    c4_ns = sum(int(p["delta_run_time_ns"]) for p in c4)
    c4_runs = sum(int(p["delta_run_cnt"]) for p in c4)
    ebpf_core = ebpf_ns / (wall_s * 1e9) * 100.0
    s: dict[str, Any] = {
        "window_s": wall_s,
        "ncpu": ncpu,
        "apps": len(instances),
        "ebpf_cpu_pct_core": ebpf_core,
        "ebpf_cpu_pct_node": ebpf_core / ncpu,
        "connect4_cpu_pct_core": c4_ns / (wall_s * 1e9) * 100.0,
        "ebpf_runs_per_s": ebpf_runs / wall_s,
        "connect4_runs_per_s": c4_runs / wall_s,
        "node_busy_pct_node": node_busy_pct_node,
    }
    if c4_runs:
        s["connect4_ns_per_run"] = c4_ns / c4_runs
    if not instances:
        return s
    usage = sum(deltas[i.name]["usage_usec"] for i in instances)
    user = sum(deltas[i.name].get("user_usec", 0) for i in instances)
    system = sum(deltas[i.name].get("system_usec", 0) for i in instances)
    pod_core = core(usage)
    s.update(
        {
            "pod_cpu_pct_core": pod_core,
            "pod_cpu_pct_node": pod_core / ncpu,
            "pod_user_pct_node": core(user) / ncpu,
            "pod_system_pct_node": core(system) / ncpu,
            "app_cpu_pct_core": pod_core - ebpf_core,
            "app_cpu_pct_node": (pod_core - ebpf_core) / ncpu,
            "ebpf_share_of_pod_cpu_pct": ebpf_core / pod_core * 100.0 if pod_core > 0 else 0.0,
            "max_app_cpu_pct_core": max(core(deltas[i.name]["usage_usec"]) for i in instances),
        }
    )
    if all(i.cpu_m > 0 for i in instances):
        limit_core = sum(i.cpu_m for i in instances) / 10.0
        slack = CFS_PERIOD_S / wall_s
        shares = [core(deltas[i.name]["usage_usec"]) / (i.cpu_m / 10.0) for i in instances]
        s.update(
            {
                "limit_pct_core": limit_core,
                "limit_pct_node": limit_core / ncpu,
                "pod_share_of_limit_pct": pod_core / limit_core * 100.0,
                "ebpf_share_of_limit_pct": ebpf_core / limit_core * 100.0,
                "max_app_share_of_limit_pct": max(shares) * 100.0,
                "limit_slack_pct": slack * 100.0,
                "within_limit": all(x <= 1.0 + slack for x in shares),
            }
        )
    return s


def load_figures(results: Sequence[loadgen.LoadResult]) -> dict[str, Any]:
    """The loads' figures over the whole run (all instances together)."""
    if not results:
        return {}
    p99 = [r.percentile(99) for r in results if r.count]
    return {
        "load_qps": sum(r.qps for r in results),
        "load_requests": sum(r.count for r in results),
        "load_errors": sum(r.errors for r in results),
        "load_connections": sum(r.connections for r in results),
        "load_p99_ms": max(p99) * 1e3 if p99 else 0.0,
        "load_runner": results[0].runner,
    }


# ------------------------------------------------------------------ processes


def _in_instance(state_dir: Path, inst_pod: str, group: str, argv: Sequence[str]) -> list[str]:
    """argv that runs `argv` in the pod's netns and the instance's cgroup (podexec's way)."""
    return [
        sys.executable,
        "-m",
        "kmesh_lab.cpugroups",
        "--state-dir",
        str(state_dir),
        "exec",
        "--pod",
        inst_pod,
        "--group",
        group,
        "--",
        *argv,
    ]


def _start(
    argv: Sequence[str], state_dir: Path, log: Path, stdout: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` with stderr to `log` and stdout to a file (`stdout`, else `log`): never
    to a pipe, which a long run would fill (64 KiB) and so stall the process."""
    env = dict(os.environ, KMESH_LAB_STATE=str(state_dir))
    with open(log, "wb") as err, open(stdout or log, "ab" if stdout is None else "wb") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,  # its own process group: stopped as one if it overruns
        )


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for a started process; stop its process group if it overruns (exit 124)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of a process this module started
        proc.wait(timeout=10)
        return 124


class _Reader:
    """Reads instances' cpu.stat, /proc/stat and the agent's program counters."""

    def __init__(self, layout: cgroups.Layout, prefix: str, names: Sequence[str]) -> None:
        self.layout = layout
        self.paths = {n: layout.v2_dir(cpugroups.group_path(prefix, n)) / "cpu.stat" for n in names}

    def cpu(self) -> dict[str, dict[str, int]]:
        return {n: parse_cpu_stat(p.read_text()) for n, p in self.paths.items()}

    @staticmethod
    def node() -> tuple[int, int]:
        return parse_proc_stat(Path("/proc/stat").read_text())


def measure(
    *,
    state_dir: Path,
    bpffs: str,
    url: str,
    apps: int,
    app_cpu_m: int,
    connections: int,
    warmup: float,
    windows: int,
    window: float,
    raw_dir: Path,
    tag: str,
    probe_url: str | None = None,
    probe_interval: float = 0.2,
) -> list[dict[str, Any]]:
    """Run one measurement (see the module doc); return one sample per window."""
    from kmesh_node import bpfobjects, stats  # the agent's reader, as `kmesh-node top` uses

    if windows < 1 or window <= 0 or warmup < 0:
        raise ValueError("--windows >= 1, --window > 0 and --warmup >= 0 are needed")
    if apps and connections < 1:
        raise ValueError(f"--connections {connections}: each app needs at least 1")
    state = lab.load_state(state_dir)
    prefix = state["prefix"]
    layout = cgroups.detect()
    clients = [n for n, p in state["pods"].items() if p["role"] == "client"]
    instances = plan_instances(clients, apps, app_cpu_m)
    wanted = {i.name: i.cpu_m for i in instances}
    probe_pod = instances[0].pod if instances else (sorted(clients) or [""])[0]
    if probe_url:
        wanted["probe"] = 0
    cpugroups.ensure(layout, prefix, wanted)
    raw_dir.mkdir(parents=True, exist_ok=True)
    ncpu = os.cpu_count() or 1
    load_s = math.ceil(warmup + windows * window + 1.0)
    inv = bpfobjects.discover(bpffs, count_entries=False)
    if not inv.prog_fds:
        inv.close()
        raise MeasureError(
            f"no BPF program is pinned under {bpffs}: the agent is not running there. "
            "Fix: ansible-playbook playbooks/agent.yml (same kmesh_node_bpffs)"
        )
    reader = _Reader(layout, prefix, [i.name for i in instances])
    procs: list[tuple[Instance, subprocess.Popen[bytes], Path, Path]] = []
    probe_proc = None
    probe_out = raw_dir / f"{tag}.probe.jsonl"
    samples: list[dict[str, Any]] = []
    spans: list[tuple[float, float]] = []
    try:
        with stats.stats_enabled() as method:
            for inst in instances:
                out = raw_dir / f"{tag}.{inst.name}.json"
                log = raw_dir / f"{tag}.{inst.name}.log"
                fortio = [
                    str(REPO_ROOT / "tools" / "fortio.sh"),
                    "load",
                    "-c",
                    str(connections),
                    "-t",
                    f"{load_s}s",
                    "-qps",
                    "0",
                    "-keepalive=false",
                    "-json",
                    str(out),
                    url,
                ]
                argv = _in_instance(state_dir, inst.pod, inst.name, fortio)
                procs.append((inst, _start(argv, state_dir, log), out, log))
            if probe_url:
                pargv = [
                    sys.executable,
                    "-m",
                    "kmesh_lab.probe",
                    "run",
                    "--url",
                    probe_url,
                    "--duration",
                    str(load_s),
                    "--interval",
                    str(probe_interval),
                ]
                probe_proc = _start(
                    _in_instance(state_dir, probe_pod, "probe", pargv),
                    state_dir,
                    raw_dir / f"{tag}.probe.log",
                    probe_out,
                )
            time.sleep(warmup)
            for k in range(windows):
                before = {pid: bpfobjects.prog_run_stats(fd) for pid, fd in inv.prog_fds.items()}
                cpu0, node0, t0 = reader.cpu(), reader.node(), time.monotonic_ns()
                time.sleep(window)
                after = {pid: bpfobjects.prog_run_stats(fd) for pid, fd in inv.prog_fds.items()}
                cpu1, node1, t1 = reader.cpu(), reader.node(), time.monotonic_ns()
                wall_ns = t1 - t0
                inv_dict = stats.inventory_dict(inv)
                report = stats.build_report(
                    inv_dict,
                    before,
                    after,
                    wall_ns,
                    ncpu,
                    {
                        "timestamp": time.time(),
                        "interval": window,
                        "bpffs": bpffs,
                        "stats_method": method,
                    },
                )
                (raw_dir / f"{tag}.w{k}.top.json").write_text(json.dumps(report, indent=1))
                deltas = {
                    n: {key: cpu1[n][key] - cpu0[n].get(key, 0) for key in cpu1[n]} for n in cpu1
                }
                samples.append(
                    window_sample(
                        wall_ns / 1e9,
                        ncpu,
                        instances,
                        deltas,
                        report["programs"],
                        node_busy_pct(node0, node1),
                    )
                )
                spans.append((t0 / 1e9, t1 / 1e9))
    finally:
        inv.close()
        results = []
        failures = []
        for inst, proc, out, log in procs:
            rc = _finish(proc, load_s + 40)
            if rc != 0:
                tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
                failures.append(f"{inst.name} (pod {inst.pod}) exit {rc}: {tail.strip()}")
                continue
            try:
                results.append(loadgen.parse(out))
            except loadgen.LoadResultError as exc:
                failures.append(f"{inst.name}: {exc}")
        events: list[dict[str, Any]] = []
        if probe_proc is not None:
            rc = _finish(probe_proc, load_s + 40)
            events = probe.parse_lines(probe_out.read_text(errors="replace").splitlines())
            if rc != 0:
                failures.append(f"probe exit {rc}: see {raw_dir / (tag + '.probe.log')}")
    if failures:
        raise MeasureError(
            "load failed: " + "; ".join(failures) + f". Logs and JSON are in {raw_dir}; "
            f"try the load by hand: tools/podexec.sh {probe_pod} -- curl -sv {url}"
        )
    figures = load_figures(results)
    for sample, (t0, t1) in zip(samples, spans, strict=True):
        sample.update(figures)
        if probe_url:
            sample.update(probe.summarize(events, t0, t1))
    return samples


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kmesh_lab.cpuload", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="one measurement; samples (one per window) to --out")
    m.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("KMESH_LAB_STATE", lab.DEFAULT_STATE_DIR)),
    )
    m.add_argument("--bpffs", required=True, help="the agent's pin directory")
    m.add_argument("--url", required=True, help="http://VIP:PORT/ of the service under load")
    m.add_argument("--apps", type=int, default=1, help="app instances (0 = no load)")
    m.add_argument("--app-cpu-m", type=int, default=0, help="CPU limit of each, 0 = none")
    m.add_argument("--connections", type=int, default=1500, help="fortio -c of each app")
    m.add_argument("--warmup", type=float, default=1.0, help="seconds before the first window")
    m.add_argument("--windows", type=int, default=1)
    m.add_argument("--window", type=float, default=3.0, help="seconds per window")
    m.add_argument("--probe-url", help="run the responsiveness probe against this URL")
    m.add_argument("--probe-interval", type=float, default=0.2)
    m.add_argument("--raw-dir", type=Path, required=True, help="loads' JSON, top reports, logs")
    m.add_argument("--tag", default="run", help="file name prefix in --raw-dir")
    m.add_argument("--out", type=Path, required=True, help="JSON list of samples")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        samples = measure(
            state_dir=args.state_dir,
            bpffs=args.bpffs,
            url=args.url,
            apps=args.apps,
            app_cpu_m=args.app_cpu_m,
            connections=args.connections,
            warmup=args.warmup,
            windows=args.windows,
            window=args.window,
            raw_dir=args.raw_dir,
            tag=args.tag,
            probe_url=args.probe_url,
            probe_interval=args.probe_interval,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"cpuload: {exc}", file=sys.stderr)
        return 2
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(samples, indent=1))
    tmp.replace(args.out)
    for s in samples:
        line = ", ".join(
            f"{k} {s[k]:.2f}"
            for k in ("pod_cpu_pct_core", "ebpf_cpu_pct_core", "node_busy_pct_node", "load_qps")
            if isinstance(s.get(k), float)
        )
        print(f"cpuload {args.tag}: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
