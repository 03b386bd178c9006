"""The steps of the memory and scaling suites, laid out before anything runs.

    python -m kmesh_lab.suiteplan memory  --points 1,100,1000 --repetitions 3 --baseline 1
                                          --start 20000 [--file suite_memory]
    python -m kmesh_lab.suiteplan scaling --batch 500 --batches 20 --cycles 5
                                          --start 40000 [--file-prefix suite_scaling]

Prints a JSON list of steps; the roles loop over it (one line of progress per step) and hand
each step to `python -m kmesh_lab.servicestep step --step JSON`. A step says which manifest
files to remove, which to write (file, first index, count), how many services the suite then
holds (`suite_services`), the scenario it measures and which repetition that is. Steps with
`measure: false` only change the lab (the reset between scaling cycles).

Memory (seeds 000/001 test 1): for every point N and every repetition, from the agent's
baseline B (the lab's own services) the suite's file is removed and N - B services are
written, so each repetition starts from the same state; the scenario is `services=N`.

Each step names the published experiments (reference/published.yml) its scenario is compared
with.

Scaling (seed 002): per cycle, batches of `batch` services are added one file at a time
(`up.services=500`, `up.services=1000`, ...), then every file is removed at once
(`down.services=0`), then the batches are added again (`up_again.services=...`). A cycle is
one repetition: each scenario gets one sample per cycle. Cycles after the first start with an
unmeasured reset (all removed).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


class PlanError(ValueError):
    """Parameters that cannot make a plan; the message names the fix."""


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlanError(f"{name} must be a whole number >= 1, not {value!r}")


def step(
    scenario: str | None,
    repetition: int,
    suite_services: int,
    remove: list[str],
    write: dict[str, int | str] | None,
    params: dict[str, Any],
    measure: bool = True,
    experiments: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "experiments": list(experiments or []),
        "scenario": scenario,
        "repetition": repetition,
        "suite_services": suite_services,
        "remove": remove,
        "write": write,
        "params": params,
        "measure": measure,
    }


def memory(
    points: list[int], repetitions: int, baseline: int, start: int, file: str = "suite_memory"
) -> list[dict[str, Any]]:
    """Steps of memory test 1: every point, every repetition, each from the baseline."""
    _positive("repetitions", repetitions)
    if not points:
        raise PlanError("no memory points: give e.g. --points 1,100,1000")
    if baseline < 0:
        raise PlanError(f"baseline must be >= 0 services, not {baseline}")
    for n in points:
        _positive("every point", n)
        if n < baseline:
            raise PlanError(
                f"point {n} services is below the {baseline} services the agent already holds; "
                f"start the agent with fewer base services (kmesh_node_base_services) or drop "
                f"the point"
            )
    steps = []
    for n in points:
        add = n - baseline
        write = {"file": file, "start": start, "count": add} if add else None
        params = {"services": n, "baseline_services": baseline, "suite_services": add}
        for rep in range(1, repetitions + 1):
            steps.append(
                step(f"services={n}", rep, add, [file], write, params, experiments=["memory.1"])
            )
    return steps


def scaling(
    batch: int, batches: int, cycles: int, start: int, file_prefix: str = "suite_scaling"
) -> list[dict[str, Any]]:
    """Steps of seed 002: up in batches, all down, up again; repeated `cycles` times."""
    _positive("batch", batch)
    _positive("batches", batches)
    _positive("cycles", cycles)
    files = [f"{file_prefix}-{i:03d}" for i in range(batches)]

    def ascent(phase: str, cycle: int) -> list[dict[str, Any]]:
        out = []
        for i, name in enumerate(files):
            total = (i + 1) * batch
            params = {"phase": phase, "services": total, "batch": batch, "batch_index": i + 1}
            write = {"file": name, "start": start + i * batch, "count": batch}
            exps = ["scaling.setup", "scaling.gadget"]
            if phase == "up" and i == batches - 1:
                exps.append("scaling.bpftool")  # bpftool memlock before/after all services
            if phase == "up_again" and i == 0:
                exps.append("scaling.log")  # scale-up again after the scale-in
            scenario = f"{phase}.services={total}"
            out.append(step(scenario, cycle, total, [], write, params, experiments=exps))
        return out

    steps: list[dict[str, Any]] = []
    for cycle in range(1, cycles + 1):
        if cycle > 1:
            steps.append(step(None, cycle, 0, list(files), None, {"phase": "reset"}, False))
        steps += ascent("up", cycle)
        params = {"phase": "down", "services": 0, "removed": batch * batches}
        steps.append(
            step(
                "down.services=0",
                cycle,
                0,
                list(files),
                None,
                params,
                experiments=["scaling.setup", "scaling.log"],
            )
        )
        steps += ascent("up_again", cycle)
    return steps


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PlanError(f"--points {text!r} is not a comma-separated list of numbers") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.suiteplan", description=__doc__)
    sub = parser.add_subparsers(dest="suite", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--points", required=True)
    m.add_argument("--repetitions", type=int, required=True)
    m.add_argument("--baseline", type=int, required=True)
    m.add_argument("--start", type=int, required=True, help="index of the suite's first service")
    m.add_argument("--file", default="suite_memory")
    s = sub.add_parser("scaling")
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--batches", type=int, required=True)
    s.add_argument("--cycles", type=int, required=True)
    s.add_argument("--start", type=int, required=True, help="index of the suite's first service")
    s.add_argument("--file-prefix", default="suite_scaling")
    args = parser.parse_args(argv)
    try:
        if args.suite == "memory":
            plan = memory(
                _ints(args.points), args.repetitions, args.baseline, args.start, args.file
            )
        else:
            plan = scaling(args.batch, args.batches, args.cycles, args.start, args.file_prefix)
    except PlanError as exc:
        print(f"suiteplan: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
