"""The CPU suite's run order: which measurements are left, in which order, and time left.

    python -m kmesh_lab.cpuplan --scenarios JSON --run-dir D [--suite suite_cpu]
        [--repetitions N] [--warmup S] [--window S] [--overhead S] [--ncpu N]

Prints JSON {"phases": [stress_loops, ...], "runs": [run, ...], "total_s": S}, where each
run is one call of `kmesh_lab.cpuload measure`: the scenario's settings plus rep (1-based),
runs, expected_samples, index/total, eta_s (estimated seconds left after it) and a label
for progress output.

A scenario (JSON object) has: name, experiment, stress_loops (busy-loop iterations the
agent's connect4 needs), apps (int, or "auto": the seeds' 8 app pods on 8 cores scaled to
this node -- one per core), app_cpu_m, connections (fortio -c of each app), and optionally
interleave (a group name), runs (default: --repetitions), windows (samples per run, default
1), window_s, probe (bool), seed_apps / seed_cores.

Order: by stress_loops phase in order of first appearance (the agent is restarted once per
phase, not per run); within a phase, scenarios sharing an `interleave` group alternate
repetition by repetition (A1 B1 A2 B2 ...), so that drift of a busy host hits both setups
alike. Resume: a scenario that already holds k samples in results/<run>/<suite>.json has
k // windows runs done; only the rest is planned.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kmesh_lab import results

SEED_APPS = 8  # seed 000/001 scenario 2.1: "We created 8 instances of App A"
SEED_CORES = 8  # "8-core CPU totaling 8000m"


def scaled_apps(value: object, ncpu: int, seed_apps: int, seed_cores: int) -> int:
    """`apps` of a scenario: an int as given, or "auto" = seed_apps * ncpu / seed_cores."""
    if value == "auto":
        return max(1, round(seed_apps * ncpu / seed_cores))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"apps {value!r}: use a whole number >= 0 or 'auto'")
    return value


def normalize(
    scenario: Mapping[str, Any], repetitions: int, window_s: float, ncpu: int
) -> dict[str, Any]:
    """A scenario with every default filled in and checked."""
    missing = [k for k in ("name", "stress_loops", "apps") if k not in scenario]
    if missing:
        raise ValueError(f"scenario {dict(scenario)!r} lacks {', '.join(missing)}")
    s = dict(scenario)
    s.setdefault("experiment", None)
    s.setdefault("interleave", None)
    s.setdefault("runs", repetitions)
    s.setdefault("windows", 1)
    s.setdefault("window_s", window_s)
    s.setdefault("probe", False)
    s.setdefault("app_cpu_m", 0)
    s.setdefault("connections", 0)
    s.setdefault("seed_threads", None)
    s.setdefault("seed_apps", SEED_APPS)
    s.setdefault("seed_cores", SEED_CORES)
    for key in ("runs", "windows", "stress_loops", "app_cpu_m", "connections", "apps"):
        if isinstance(s[key], str) and s[key].isdigit():  # Ansible may template ints as text
            s[key] = int(s[key])
    try:
        s["window_s"] = float(s["window_s"])
    except (TypeError, ValueError):
        raise ValueError(
            f"scenario {s['name']}: window_s={s['window_s']!r} is not seconds"
        ) from None
    if s["window_s"] <= 0:
        raise ValueError(f"scenario {s['name']}: window_s must be > 0")
    if isinstance(s["probe"], str):
        s["probe"] = s["probe"].lower() in ("true", "yes", "1")
    s["apps_requested"] = s["apps"]
    s["apps"] = scaled_apps(s["apps"], ncpu, int(s["seed_apps"]), int(s["seed_cores"]))
    for key in ("runs", "windows", "stress_loops", "app_cpu_m", "connections"):
        if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < 0:
            raise ValueError(f"scenario {s['name']}: {key}={s[key]!r} is not a whole number >= 0")
    if s["runs"] < 1 or s["windows"] < 1:
        raise ValueError(f"scenario {s['name']}: runs and windows must be >= 1")
    if s["apps"] and s["connections"] < 1:
        raise ValueError(f"scenario {s['name']}: apps need connections >= 1")
    s["expected_samples"] = s["runs"] * s["windows"]
    return s


def order(
    scenarios: Sequence[Mapping[str, Any]], done_samples: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The runs left, phase by phase, interleaved within groups (see the module doc)."""
    phases: list[int] = []
    for s in scenarios:
        if s["stress_loops"] not in phases:
            phases.append(s["stress_loops"])
    runs: list[dict[str, Any]] = []
    for phase in phases:
        in_phase = [s for s in scenarios if s["stress_loops"] == phase]
        blocks: list[list[Mapping[str, Any]]] = []
        seen_groups: dict[str, list[Mapping[str, Any]]] = {}
        for s in in_phase:
            group = s.get("interleave")
            if group is None:
                blocks.append([s])
            elif group in seen_groups:
                seen_groups[group].append(s)
            else:
                seen_groups[group] = [s]
                blocks.append(seen_groups[group])
        for block in blocks:
            for rep in range(1, max(s["runs"] for s in block) + 1):
                for s in block:
                    done_runs = done_samples.get(s["name"], 0) // s["windows"]
                    if rep <= s["runs"] and rep > done_runs:
                        runs.append({**s, "rep": rep})
    return runs


def estimate_s(run: Mapping[str, Any], warmup: float, overhead: float) -> float:
    """Seconds one run takes: the load (whole seconds, as the load wrapper runs it) + overhead."""
    return math.ceil(warmup + run["windows"] * float(run["window_s"]) + 1.0) + overhead


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def plan(
    scenarios: Sequence[Mapping[str, Any]],
    done_samples: Mapping[str, int],
    repetitions: int,
    warmup: float,
    window_s: float,
    overhead: float,
    ncpu: int,
) -> dict[str, Any]:
    normalized = [normalize(s, repetitions, window_s, ncpu) for s in scenarios]
    names = [s["name"] for s in normalized]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names repeat: {names}")
    runs = order(normalized, done_samples)
    costs = [estimate_s(r, warmup, overhead) for r in runs]
    left = sum(costs)
    for i, (run, cost) in enumerate(zip(runs, costs, strict=True), start=1):
        left -= cost
        run.update({"index": i, "total": len(runs), "eta_s": round(left, 1)})
        run["label"] = (
            f"{run['name']} rep {run['rep']}/{run['runs']} - run {i}/{len(runs)}, "
            f"~{_duration(left)} left after it"
        )
    phases: list[int] = []
    for r in runs:
        if r["stress_loops"] not in phases:
            phases.append(r["stress_loops"])
    return {
        "phases": phases,
        "runs": runs,
        "total_s": round(sum(costs), 1),
        "scenarios": {s["name"]: s for s in normalized},
    }


def done_counts(run_dir: Path, suite: str) -> dict[str, int]:
    """Samples already recorded per scenario (nothing when the suite has not written yet)."""
    return {r["scenario"]: len(r["samples"]) for r in results.read_records(run_dir, suite)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.cpuplan", description=__doc__)
    parser.add_argument("--scenarios", required=True, help="JSON list of scenarios")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--suite", default="suite_cpu")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--overhead", type=float, default=3.0, help="seconds per run besides load")
    parser.add_argument("--ncpu", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    try:
        scenarios = json.loads(args.scenarios)
        if not isinstance(scenarios, list) or not all(isinstance(s, dict) for s in scenarios):
            raise ValueError("--scenarios must be a JSON list of objects")
        if args.repetitions < 1:
            raise ValueError(f"--repetitions {args.repetitions}: at least 1")
        out = plan(
            scenarios,
            done_counts(args.run_dir, args.suite),
            args.repetitions,
            args.warmup,
            args.window,
            args.overhead,
            args.ncpu,
        )
    except (ValueError, json.JSONDecodeError, results.ResultsError) as exc:
        print(f"cpuplan: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
