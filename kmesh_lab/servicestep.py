"""Perform and measure one step of the memory or scaling suite (a step of kmesh_lab.suiteplan).

    python -m kmesh_lab.servicestep step --step JSON --prefix P LAB-OPTIONS [RECORD-OPTIONS]
    python -m kmesh_lab.servicestep load --scenario X --repetition I --connections C
                                         --duration 5s LAB-OPTIONS [RECORD-OPTIONS]
    python -m kmesh_lab.servicestep cleanup --prefix P LAB-OPTIONS
    python -m kmesh_lab.servicestep services --prefix P LAB-OPTIONS    # what the agent holds

LAB-OPTIONS: --state-dir --manifests-dir --bpffs --metrics --pid-file (where the lab and the
agent are). Every suite names its manifest files suite_* (--prefix: this suite's); the
agent's baseline is the services of the other files (its own). `cleanup --prefix suite_`
removes every suite's leftovers.

A step either deletes (removes the step's files at time t0) or adds (removes the step's
files, waits until the agent holds the baseline plus what is left, then writes the step's
file, services start..start+count-1, at time t0, and from a client pod probes a sample of
the new VIPs until they answer: kmesh_lab.vipprobe, seconds from t0). Then it waits until
the agent reports the expected number of services, reads the agent's CPU (from /proc, t0 to
then) and measures it (kmesh_lab.agentsample: BPF memory true and gadget view, entries,
resizes, RSS). The sample is appended to the scenario in results/<run>/<suite>.json unless
that scenario already has this repetition (a resumed run: then the step only changes the
lab). Prints one JSON line: {"measured", "sample", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from kmesh_lab import agentsample, loadgen, procstat, results, services

REPO = Path(__file__).resolve().parents[1]
PODEXEC = REPO / "tools" / "podexec.sh"
FORTIO = REPO / "tools" / "fortio.sh"
SUITE_MARK = "suite_"  # every suite's manifest files start with this
PROBE_SLACK_S = 30.0  # the probe process is killed this long after its own timeout
PROBE_START_S = 60.0  # the probe must be ready to try within this


class StepError(RuntimeError):
    """A step could not be done or measured; the message names the fix."""


# ------------------------------------------------------------------ lab changes


def manifest_path(manifests_dir: Path, file: str) -> Path:
    return manifests_dir / f"{file}.yaml"


def remove_files(manifests_dir: Path, files: list[str]) -> int:
    """Remove the manifest files; return how many existed."""
    removed = 0
    for name in files:
        path = manifest_path(manifests_dir, name)
        if path.is_file():
            path.unlink()
            removed += 1
    return removed


def suite_files(manifests_dir: Path, prefix: str) -> list[str]:
    """The suite's manifest files present now (names without .yaml)."""
    if not manifests_dir.is_dir():
        return []
    return sorted(
        p.stem for p in manifests_dir.glob(f"{prefix}*.yaml") if not p.name.startswith(".")
    )


def base_services(manifests_dir: Path) -> int:
    """Services of the files no suite wrote (names not starting with suite_): the agent's
    own services, its baseline."""
    if not manifests_dir.is_dir():
        return 0
    names = sorted(p.stem for p in manifests_dir.glob("*.yaml") if not p.name.startswith("."))
    return sum(services_in(manifests_dir, n) for n in names if not n.startswith(SUITE_MARK))


def check_prefix(prefix: str) -> None:
    if not prefix.startswith(SUITE_MARK):
        raise StepError(
            f"--prefix {prefix!r}: a suite's manifest files must be named {SUITE_MARK}*, so "
            f"that they are never counted as the agent's own services"
        )


def services_in(manifests_dir: Path, file: str) -> int:
    """Services in one manifest file (0 when it does not exist)."""
    path = manifest_path(manifests_dir, file)
    if not path.is_file():
        return 0
    with path.open() as f:
        docs = yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return sum(1 for d in docs if isinstance(d, dict) and d.get("kind") == "Service")


def first_vip(manifests_dir: Path) -> tuple[str, int]:
    """(clusterIP, port) of the first Service in the directory (files in name order)."""
    for path in sorted(manifests_dir.glob("*.yaml")):
        if path.name.startswith("."):
            continue
        with path.open() as f:
            for doc in yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if isinstance(doc, dict) and doc.get("kind") == "Service":
                    spec = doc.get("spec", {})
                    ports = spec.get("ports") or [{}]
                    if spec.get("clusterIP") and ports[0].get("port"):
                        return spec["clusterIP"], int(ports[0]["port"])
    raise StepError(
        f"no Service with a clusterIP in {manifests_dir}: start the agent with base "
        f"services (playbooks/agent.yml)"
    )


def build(
    state_dir: Path, start: int, count: int, endpoints: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Manifests (docs) and listing (name, vip, port) of services start..start+count-1."""
    try:
        state = json.loads((state_dir / "lab.json").read_text())
    except OSError as exc:
        raise StepError(f"no lab at {state_dir} ({exc.strerror}): bring the lab up") from exc
    servers = [p["address"] for p in state["pods"].values() if p["role"] == "server"]
    try:
        return services.manifests(start, count, servers, endpoints, 80)
    except ValueError as exc:
        raise StepError(str(exc)) from exc


def spread(items: list[Any], k: int) -> list[Any]:
    """k items spread evenly over the list, first and last included."""
    if k <= 0 or not items:
        return []
    if k >= len(items):
        return list(items)
    if k == 1:
        return [items[-1]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def start_probe(
    state_dir: Path, pod: str, targets: list[str], timeout: float
) -> subprocess.Popen[str]:
    """Start kmesh_lab.vipprobe in a client pod and wait until it is ready to try; it starts
    trying when `go` hands it the time of the change (so its own start is not timed)."""
    argv = [str(PODEXEC), pod, "--", sys.executable, "-m", "kmesh_lab.vipprobe"]
    argv += ["--since", "-", "--timeout", str(timeout), "--http", *targets]
    env = {**os.environ, "KMESH_LAB_STATE": str(state_dir), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert proc.stdout is not None
    ready = ""
    if select.select([proc.stdout], [], [], PROBE_START_S)[0]:
        ready = proc.stdout.readline()
    if ready.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise StepError(f"the VIP probe in {pod} did not start: {err.strip()[-400:]}")
    return proc


def go(proc: subprocess.Popen[str], since: float) -> None:
    """Tell a ready probe when the change was made: it starts trying now."""
    assert proc.stdin is not None
    proc.stdin.write(f"{since:.6f}\n")
    proc.stdin.flush()  # left open: finish_probe's communicate() closes it


def finish_probe(proc: subprocess.Popen[str], pod: str, timeout: float) -> dict[str, Any]:
    """Wait for the probe (bounded) and return its JSON result (its last line)."""
    try:
        out, err = proc.communicate(timeout=timeout + PROBE_SLACK_S)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise StepError(f"the VIP probe in {pod} ran past {timeout + PROBE_SLACK_S:.0f} s") from exc
    if proc.returncode not in (0, 1) or not out.strip():
        raise StepError(f"the VIP probe in {pod} failed ({proc.returncode}): {err[-400:]}")
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------ recording


def samples_recorded(run_dir: Path, suite: str, scenario: str) -> int:
    for rec in results.read_records(run_dir, suite):
        if rec["scenario"] == scenario:
            return len(rec["samples"])
    return 0


def needs_sample(args: argparse.Namespace, scenario: str | None, repetition: int) -> bool:
    if scenario is None:
        return False
    if not args.run_dir:
        return True
    return samples_recorded(args.run_dir, args.suite, scenario) < repetition


def record(
    args: argparse.Namespace,
    scenario: str,
    params: dict[str, Any],
    sample: dict[str, Any],
    experiments: list[str] | None = None,
) -> None:
    if not args.run_dir:
        return
    results.append_samples(
        args.run_dir,
        args.suite,
        scenario,
        [sample],
        params=params,
        experiments=experiments or args.experiment,
        expected_samples=args.repetitions,
        lab=json.loads(args.lab) if args.lab else None,
    )


# ------------------------------------------------------------------ commands


def _agent(args: argparse.Namespace) -> agentsample.Agent:
    return agentsample.Agent(args.bpffs, args.metrics, args.pid_file)


def do_step(args: argparse.Namespace) -> dict[str, Any]:
    st = json.loads(args.step)
    agent = _agent(args)
    mdir: Path = args.manifests_dir
    measure = st.get("measure", True) and needs_sample(args, st["scenario"], st["repetition"])
    write = st.get("write")

    baseline = base_services(mdir)
    expected = baseline + st["suite_services"]
    pid = agent.pid()
    if write:
        # the removals before a write put the lab back to a known state; not timed
        remove_files(mdir, st["remove"])
        before_write = baseline + sum(services_in(mdir, f) for f in suite_files(mdir, SUITE_MARK))
        agentsample.wait_services(agent, before_write, args.sync_timeout)
    probe_proc: subprocess.Popen[str] | None = None
    probe: dict[str, Any] | None = None
    try:
        docs: list[dict[str, Any]] = []
        if write:
            docs, listing = build(args.state_dir, write["start"], write["count"], args.endpoints)
            if measure and args.probe_sample > 0:
                targets = [f"{s['vip']}:{s['port']}" for s in spread(listing, args.probe_sample)]
                probe_proc = start_probe(
                    args.state_dir, args.probe_pod, targets, args.probe_timeout
                )
        cpu0 = procstat.read(pid)
        t0 = time.time()
        if write:
            services.write(mdir, write["file"], docs)
        else:
            remove_files(mdir, st["remove"])  # the change itself (e.g. seed 002's delete)
        if probe_proc is not None:
            go(probe_proc, t0)
        # polled every 0.2 s while the probe runs: each scrape reads the kernel maps, so a
        # faster poll would slow the agent it measures
        synced = agentsample.wait_services(agent, expected, args.sync_timeout, poll=0.2)
        sync_s = time.time() - t0
        if probe_proc is not None:
            probe = finish_probe(probe_proc, args.probe_pod, args.probe_timeout)
    finally:
        if probe_proc is not None and probe_proc.poll() is None:
            probe_proc.kill()
            probe_proc.communicate()
    cpu1 = procstat.read(pid)
    out: dict[str, Any] = {"scenario": st["scenario"], "repetition": st["repetition"]}
    out["measured"] = measure
    if not measure:
        return out
    if probe is not None and probe["pending"]:
        raise StepError(
            f"{len(probe['pending'])} of {probe['targets']} new services did not answer through "
            f"their VIPs within {args.probe_timeout:.0f} s ({', '.join(probe['pending'][:5])}); "
            f"look at the agent's log and `kmesh-node status --bpffs {args.bpffs}`"
        )
    sample = agentsample.measure(agent)
    if sample.get("services") != expected:
        raise StepError(
            f"the agent holds {sample.get('services')} services, the step expects {expected}"
        )
    change = procstat.cpu_between(cpu0, cpu1)
    sample.update(
        {
            "repetition": st["repetition"],
            "sync_s": round(sync_s, 6),  # change written -> the agent reports the count (0.2 s)
            "sync_wait_s": round(synced, 6),
            # CPU seconds the agent spent from the write until the services answered and
            # it reported them (utime+stime deltas; 10 ms tick resolution)
            "agent_change_cpu_s": change["cpu_s"],
            "agent_change_wall_s": change["wall_s"],
        }
    )
    if probe is not None:
        sample.update(
            {
                "answer_p50_s": probe["p50_s"],
                "answer_max_s": probe["max_s"],
                "answer_floor_s": probe["first_attempt_s"],
                "probed_vips": probe["targets"],
                "answered_vips": probe["answered"],
            }
        )
    # idle CPU of the agent over a short window after the change
    idle0 = procstat.read(pid)
    time.sleep(args.idle_window)
    idle = procstat.cpu_between(idle0, procstat.read(pid))
    sample["agent_idle_cpu_pct_core"] = idle["cpu_pct_core"]
    sample["agent_idle_cpu_pct_node"] = idle["cpu_pct_node"]
    record(args, st["scenario"], st["params"], sample, st.get("experiments"))
    out["sample"] = sample
    return out


def do_load(args: argparse.Namespace) -> dict[str, Any]:
    """One repetition of memory under load: measure, load the first service, measure during
    the load (`--samples` times) and after it."""
    agent = _agent(args)
    if not needs_sample(args, args.scenario, args.repetition):
        return {"scenario": args.scenario, "repetition": args.repetition, "measured": False}
    vip, port = first_vip(args.manifests_dir)
    raw = Path(args.raw_dir)
    raw.mkdir(parents=True, exist_ok=True)
    load_json = raw / f"{args.scenario}.rep{args.repetition}.json"
    before = agentsample.measure(agent)
    duration = loadgen_seconds(args.duration)
    argv = [str(PODEXEC), args.probe_pod, "--", str(FORTIO), "load", "-c", str(args.connections)]
    argv += ["-t", args.duration, "-qps", "0", "-keepalive=false", "-json", str(load_json)]
    argv += [f"http://{vip}:{port}/"]
    env = {**os.environ, "KMESH_LAB_STATE": str(args.state_dir)}
    during: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            for i in range(args.samples):
                # evenly inside the load, each over a 1 s window of eBPF run counts
                due = t0 + duration * (i + 1) / (args.samples + 1) - 0.5
                time.sleep(max(0.0, due - time.monotonic()))
                if proc.poll() is not None:
                    break
                during.append(agentsample.measure(agent, interval=1.0))
            _, err = proc.communicate(timeout=duration + 60)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        raise StepError(f"the load failed ({proc.returncode}): {err.strip()[-400:]}")
    if not during:
        raise StepError("the load ended before any sample was taken; use a longer --duration")
    after = agentsample.measure(agent)
    load = loadgen.parse(load_json).to_sample()
    sample: dict[str, Any] = {"repetition": args.repetition, "vip": f"{vip}:{port}"}
    for key in (
        "bpf_bytes",
        "bpf_maps_bytes",
        "gadget_distinct_bytes",
        "gadget_sum_bytes",
        "bpf_entries",
        "agent_rss_bytes",
        "services",
    ):
        sample[f"{key}_before"] = before[key]
        sample[f"{key}_during_max"] = max(d[key] for d in during)
        sample[f"{key}_during_min"] = min(d[key] for d in during)
        sample[f"{key}_after"] = after[key]
    sample["bpf_runs_during"] = sum(d["bpf_runs"] for d in during)
    sample["bpf_cpu_pct_core_during"] = max(d["bpf_cpu_pct_core"] for d in during)
    sample["during_samples"] = len(during)
    sample["load"] = load
    for key in ("qps", "count", "errors", "p50_ms", "p99_ms"):
        if key in load:
            sample[f"load_{key}"] = load[key]
    sample["gadget_programs_during"] = during[-1]["gadget_programs"]
    params = {
        "services": before["services"],
        "connections": args.connections,
        "duration": args.duration,
        "qps": 0,
        "keepalive": False,
        "client": args.probe_pod,
    }
    record(args, args.scenario, params, sample)
    return {
        "scenario": args.scenario,
        "repetition": args.repetition,
        "measured": True,
        "sample": sample,
    }


def loadgen_seconds(duration: str) -> float:
    """Seconds of a fortio duration like 5s, 1m30s, 500ms."""
    total, pos = 0.0, 0
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(duration) or total <= 0:
        raise StepError(f"duration {duration!r} is not like 5s, 1m30s or 500ms")
    return total


def do_cleanup(args: argparse.Namespace) -> dict[str, Any]:
    """Remove every manifest file of the suite; wait until the agent is back to the baseline."""
    files = suite_files(args.manifests_dir, args.prefix)
    remove_files(args.manifests_dir, files)
    baseline = base_services(args.manifests_dir)
    waited = agentsample.wait_services(_agent(args), baseline, args.sync_timeout)
    return {"removed": files, "services": baseline, "waited_s": round(waited, 3)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.servicestep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def lab_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", type=Path, required=True, help="the lab's state dir")
        p.add_argument("--manifests-dir", type=Path, required=True)
        p.add_argument("--bpffs", required=True, help="the agent's pin directory")
        p.add_argument("--metrics", required=True, help="the agent's metrics HOST:PORT")
        p.add_argument("--pid-file", type=Path, required=True, help="the agent's PID file")
        p.add_argument("--sync-timeout", type=float, default=120.0)

    def record_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--run-dir", type=Path, help="record into RUN_DIR/SUITE.json")
        p.add_argument("--suite", default="suite_memory")
        p.add_argument("--experiment", action="append", default=[])
        p.add_argument("--repetitions", type=int, help="samples each scenario needs")
        p.add_argument("--lab", help="JSON kept in the record's environment")

    s = sub.add_parser("step", help="perform and measure one planned step")
    lab_opts(s)
    record_opts(s)
    s.add_argument("--step", required=True, help="one step of kmesh_lab.suiteplan (JSON)")
    s.add_argument("--prefix", required=True, help="file prefix of the suite's manifests")
    s.add_argument("--endpoints", type=int, default=3)
    s.add_argument("--probe-pod", default="client-0")
    s.add_argument("--probe-sample", type=int, default=10, help="new VIPs probed (0 = none)")
    s.add_argument("--probe-timeout", type=float, default=60.0)
    s.add_argument("--idle-window", type=float, default=1.0, help="s of idle agent CPU")

    ld = sub.add_parser("load", help="memory under load, one repetition")
    lab_opts(ld)
    record_opts(ld)
    ld.add_argument("--scenario", required=True)
    ld.add_argument("--repetition", type=int, required=True)
    ld.add_argument("--probe-pod", default="client-0", help="client pod that runs the load")
    ld.add_argument("--connections", type=int, required=True)
    ld.add_argument("--duration", required=True, help="fortio duration, e.g. 5s")
    ld.add_argument("--samples", type=int, default=3, help="measurements during the load")
    ld.add_argument("--raw-dir", required=True, help="where the load's JSON goes")

    c = sub.add_parser("cleanup", help="remove the suite's manifests, wait for the baseline")
    lab_opts(c)
    c.add_argument("--prefix", required=True)

    sv = sub.add_parser("services", help="services the agent holds now, and its suite files")
    lab_opts(sv)
    sv.add_argument("--prefix", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "prefix", None) is not None:
            check_prefix(args.prefix)
        if args.command == "step":
            out = do_step(args)
        elif args.command == "load":
            out = do_load(args)
        elif args.command == "cleanup":
            out = do_cleanup(args)
        else:
            out = {
                "services": agentsample.services(_agent(args)),
                "base_services": base_services(args.manifests_dir),
                "suite_files": suite_files(args.manifests_dir, args.prefix),
            }
    except (StepError, agentsample.AgentError, procstat.ProcError, results.ResultsError) as exc:
        print(f"servicestep {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
