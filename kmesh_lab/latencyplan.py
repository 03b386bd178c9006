"""The latency suite's plan (seed 004): blocks of loads per data plane and repetition.

    python -m kmesh_lab.latencyplan --planes pod_ip,kmesh_node --repetitions 3
        --keepalive 1,16,128 --new-connection 16,128 --qps 100,1000,5000
        [--cpu-connections 16] [--duration 2] [--cpu-duration 3] [--last kube_proxy_iptables_legacy]

Prints a JSON list of blocks. A block is one data plane in one repetition: the suite puts
the lab into that plane once (kmesh_lab.dataplane) and runs the block's loads, so a
repetition visits every plane and drift on the node (other work, thermal, caches) hits every
plane alike. Planes alternate direction between repetitions (A..F, F..A, A..F): the
switches that cost most (an agent restart for acceleration) happen once per repetition, not
twice. Planes named in --last run after all the interleaved repetitions: the legacy-iptables
nat table cannot be removed from a live namespace and keeps conntrack on, which would
change every plane measured after it.

Scenarios (unique per plane and point, one sample per repetition):
    conn.<plane>.c=<C>.keepalive / conn.<plane>.c=<C>.new_connection
        latency p50/p90/p99 and throughput at C connections, as fast as possible (qps 0)
    cpu.<plane>.qps=<Q>
        CPU of apps, proxies and eBPF at a fixed request rate (the seed's "same QPS")
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kmesh_lab import dataplane

CONN_EXPERIMENT = "latency.connections"
CPU_EXPERIMENT = "latency.cpu_qps"


class PlanError(ValueError):
    """Parameters that make no plan; the message names the fix."""


def _positive_list(name: str, values: list[int]) -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise PlanError(f"{name}: {v!r} is not a whole number >= 1")


def conn_scenario(plane: str, connections: int, keepalive: bool) -> str:
    return f"conn.{plane}.c={connections}.{'keepalive' if keepalive else 'new_connection'}"


def cpu_scenario(plane: str, qps: int) -> str:
    return f"cpu.{plane}.qps={qps}"


def measurements(
    plane: str,
    keepalive: list[int],
    new_connection: list[int],
    qps: list[int],
    cpu_connections: int,
    duration_s: int,
    cpu_duration_s: int,
) -> list[dict[str, Any]]:
    """The loads of one plane: connection sweeps (both variants), then CPU at each rate."""
    out: list[dict[str, Any]] = []
    for ka, points in ((True, keepalive), (False, new_connection)):
        for c in points:
            out.append(
                {
                    "scenario": conn_scenario(plane, c, ka),
                    "kind": "conn",
                    "experiments": [CONN_EXPERIMENT],
                    "params": {
                        "data_plane": plane,
                        "connections": c,
                        "keepalive": ka,
                        "qps": 0,  # as fast as possible
                        "duration_s": duration_s,
                    },
                }
            )
    for q in qps:
        out.append(
            {
                "scenario": cpu_scenario(plane, q),
                "kind": "cpu",
                # Istio's benchmark measures a sidecar's CPU and memory at 1000 rps, c=16
                "experiments": [CPU_EXPERIMENT]
                + (["latency.istio_benchmark"] if plane == "sidecar" else []),
                "params": {
                    "data_plane": plane,
                    "qps": q,
                    # not "connections": the latency-vs-connections plot reads that key
                    "client_connections": cpu_connections,
                    "keepalive": True,
                    "duration_s": cpu_duration_s,
                },
            }
        )
    return out


def plan(
    planes: list[str],
    repetitions: int,
    keepalive: list[int],
    new_connection: list[int],
    qps: list[int],
    cpu_connections: int = 16,
    duration_s: int = 2,
    cpu_duration_s: int = 3,
    last: tuple[str, ...] = ("kube_proxy_iptables_legacy",),
) -> list[dict[str, Any]]:
    if not planes:
        raise PlanError("no data planes: give e.g. --planes pod_ip,kmesh_node")
    for p in planes:
        try:
            dataplane.check_plane(p)
        except dataplane.PlaneError as exc:
            raise PlanError(str(exc)) from None
    if len(set(planes)) != len(planes):
        raise PlanError(f"a plane is named twice in {planes}")
    _positive_list("repetitions", [repetitions])
    _positive_list("connections (keepalive)", keepalive)
    _positive_list("connections (new connection)", new_connection)
    _positive_list("qps", qps)
    _positive_list("cpu connections / durations", [cpu_connections, duration_s, cpu_duration_s])
    if not (keepalive or new_connection or qps):
        raise PlanError("nothing to measure: give connection points or QPS points")
    interleaved = [p for p in planes if p not in last]
    trailing = [p for p in planes if p in last]
    blocks: list[dict[str, Any]] = []

    def add(plane: str, rep: int) -> None:
        loads = measurements(
            plane, keepalive, new_connection, qps, cpu_connections, duration_s, cpu_duration_s
        )
        blocks.append({"repetition": rep, "plane": plane, "measurements": loads})

    for rep in range(1, repetitions + 1):
        order = interleaved if rep % 2 else list(reversed(interleaved))
        for plane in order:
            add(plane, rep)
    for plane in trailing:
        for rep in range(1, repetitions + 1):
            add(plane, rep)
    for i, b in enumerate(blocks):
        b["index"] = i + 1
    return blocks


def scenarios(blocks: list[dict[str, Any]]) -> list[str]:
    """Every scenario of the plan, once, in plan order."""
    seen: dict[str, None] = {}
    for b in blocks:
        for m in b["measurements"]:
            seen.setdefault(m["scenario"], None)
    return list(seen)


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PlanError(f"{flag} {text!r} is not a comma-separated list of numbers") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.latencyplan", description=__doc__)
    parser.add_argument("--planes", required=True, help="comma-separated data planes")
    parser.add_argument("--repetitions", type=int, required=True)
    parser.add_argument("--keepalive", default="", help="connection points, keepalive loads")
    parser.add_argument("--new-connection", default="", help="points with one request a TCP")
    parser.add_argument("--qps", default="", help="request rates of the CPU loads")
    parser.add_argument("--cpu-connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=2, help="seconds per latency load")
    parser.add_argument("--cpu-duration", type=int, default=3, help="seconds per CPU load")
    parser.add_argument("--last", default="kube_proxy_iptables_legacy", help="planes run last")
    args = parser.parse_args(argv)
    try:
        blocks = plan(
            [p for p in args.planes.split(",") if p],
            args.repetitions,
            _ints(args.keepalive, "--keepalive"),
            _ints(args.new_connection, "--new-connection"),
            _ints(args.qps, "--qps"),
            args.cpu_connections,
            args.duration,
            args.cpu_duration,
            tuple(p for p in args.last.split(",") if p),
        )
    except PlanError as exc:
        print(f"latencyplan: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(blocks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
