"""`kmesh-node top`: the agent's own eBPF cost, measured like bpftop, shown beside the gadget.

CPU: run-time stats are switched on for the sampling window only (a BPF_ENABLE_STATS fd,
else the kernel.bpf_stats_enabled sysctl, restored afterwards), each program's run_time_ns
and run_cnt are read at both ends of the window, and

    CPU % of one core = delta run_time_ns / wall ns * 100     (bpftop's figure)
    CPU % of the node = that / number of CPUs
    ns per run        = delta run_time_ns / delta run_cnt

Memory: the memlock of every map reachable from the pins -- inner maps of *_OF_MAPS maps
included -- with entries counted, and a total. Beside it, the "gadget view": per program,
the sum of the memlock of the maps it references, which is what Inspektor Gadget's
MAPMEMORY shows (an *_OF_MAPS map counts its slots only; a shared map counts once per
program). Their difference is the blind spot of seed 002.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from kmesh_node import bpfobjects

SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


@contextlib.contextmanager
def stats_enabled(sysctl: str = SYSCTL) -> Iterator[str]:
    """Keep BPF run-time stats on inside the block; yield how ("already_on", "fd", "sysctl").

    The fd method (kernel >= 5.8) needs no restore: the kernel turns stats off when the last
    fd closes, even if we crash. The sysctl is the fallback, restored on exit.
    """
    try:
        with open(sysctl) as f:
            before = f.read().strip()
    except OSError:
        before = ""
    if before == "1":
        yield "already_on"
        return
    try:
        fd = bpfobjects.enable_stats()
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            yield "fd"
        finally:
            os.close(fd)
        return
    try:
        with open(sysctl, "w") as f:
            f.write("1")
    except OSError as exc:
        raise RuntimeError(
            f"cannot enable BPF run-time stats (BPF_ENABLE_STATS failed and {sysctl} is not "
            f"writable: {exc.strerror}); run as root on a kernel with CONFIG_BPF_SYSCALL"
        ) from exc
    try:
        yield "sysctl"
    finally:
        with open(sysctl, "w") as f:
            f.write(before or "0")


def program_rates(
    before: dict[int, tuple[int, int]],
    after: dict[int, tuple[int, int]],
    wall_ns: int,
    ncpu: int,
) -> dict[int, dict[str, float | int | None]]:
    """Per program id: deltas, CPU % of one core and of the node, ns per run, runs per s.

    A program missing from `before` (loaded meanwhile) is measured from zero; one missing
    from `after` (unloaded) is left out. Counters never go backwards for one program id.
    """
    out: dict[int, dict[str, float | int | None]] = {}
    for pid, (t1, c1) in after.items():
        t0, c0 = before.get(pid, (0, 0))
        dt, dc = max(0, t1 - t0), max(0, c1 - c0)
        core = dt / wall_ns * 100.0 if wall_ns > 0 else 0.0
        out[pid] = {
            "delta_run_time_ns": dt,
            "delta_run_cnt": dc,
            "cpu_pct_core": core,
            "cpu_pct_node": core / ncpu if ncpu > 0 else core,
            "ns_per_run": dt / dc if dc else None,
            "runs_per_s": dc / (wall_ns / 1e9) if wall_ns > 0 else 0.0,
        }
    return out


def gadget_view(programs: list[dict[str, Any]], maps: list[dict[str, Any]]) -> dict[str, Any]:
    """What Inspektor Gadget's MAPMEMORY shows, next to the truth.

    Per program: sum of memlock of the maps it references (map_ids). An outer map counts
    only its own memlock (its slots); inner maps are not referenced by the program, so they
    are invisible. A map shared by N programs counts N times in `sum_bytes`.
    """
    by_id = {m["id"]: m for m in maps}
    per_prog = []
    referenced: set[int] = set()
    for p in programs:
        ids = [i for i in p.get("map_ids", []) if i in by_id]
        referenced.update(ids)
        per_prog.append(
            {
                "id": p["id"],
                "name": p["name"],
                "map_count": len(ids),
                "map_bytes": sum(by_id[i]["memlock_bytes"] for i in ids),
            }
        )
    truth = sum(m["memlock_bytes"] for m in maps)
    distinct = sum(by_id[i]["memlock_bytes"] for i in referenced)
    inner = sum(m["memlock_bytes"] for m in maps if m.get("inner_of") is not None)
    return {
        "programs": per_prog,
        "sum_bytes": sum(p["map_bytes"] for p in per_prog),
        "distinct_referenced_bytes": distinct,
        "truth_bytes": truth,
        "invisible_bytes": truth - distinct,
        "invisible_inner_map_bytes": sum(
            m["memlock_bytes"]
            for m in maps
            if m.get("inner_of") is not None and m["id"] not in referenced
        ),
        "inner_map_bytes": inner,
    }


def totals(programs: list[dict[str, Any]], maps: list[dict[str, Any]]) -> dict[str, Any]:
    inner = [m for m in maps if m.get("inner_of") is not None]
    maps_bytes = sum(m["memlock_bytes"] for m in maps)
    progs_bytes = sum(p["memlock_bytes"] for p in programs)
    return {
        "programs": len(programs),
        "maps": len(maps),
        "inner_maps": len(inner),
        "maps_bytes": maps_bytes,
        "inner_maps_bytes": sum(m["memlock_bytes"] for m in inner),
        "programs_bytes": progs_bytes,
        "bytes": maps_bytes + progs_bytes,
        "entries": sum(m["entries"] or 0 for m in maps),
        "cpu_pct_core": sum(p.get("cpu_pct_core") or 0.0 for p in programs),
        "cpu_pct_node": sum(p.get("cpu_pct_node") or 0.0 for p in programs),
        "delta_run_cnt": sum(p.get("delta_run_cnt") or 0 for p in programs),
    }


def build_report(
    inventory: dict[str, Any],
    before: dict[int, tuple[int, int]],
    after: dict[int, tuple[int, int]],
    wall_ns: int,
    ncpu: int,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The JSON `collect` returns, from JSON-able inputs (so it is testable on fixtures).

    `inventory` is {"programs": [ProgInfo as dict], "maps": [MapInfo as dict]}.
    """
    rates = program_rates(before, after, wall_ns, ncpu)
    programs = []
    for p in sorted(inventory["programs"], key=lambda p: p["id"]):
        entry = dict(p)
        if p["id"] in after:  # cumulative counters as of the end of the window
            entry["run_time_ns"], entry["run_cnt"] = after[p["id"]]
        entry.update(
            rates.get(
                p["id"],
                {
                    "delta_run_time_ns": 0,
                    "delta_run_cnt": 0,
                    "cpu_pct_core": 0.0,
                    "cpu_pct_node": 0.0,
                    "ns_per_run": None,
                    "runs_per_s": 0.0,
                },
            )
        )
        programs.append(entry)
    maps = sorted(inventory["maps"], key=lambda m: (m.get("inner_of") is not None, m["id"]))
    report = dict(meta)
    report.update(
        {
            "ncpu": ncpu,
            "wall_ns": wall_ns,
            "programs": programs,
            "maps": maps,
            "totals": totals(programs, maps),
            "gadget_view": gadget_view(programs, maps),
        }
    )
    return report


def inventory_dict(inv: bpfobjects.Inventory) -> dict[str, Any]:
    return {
        "programs": [asdict(p) for p in inv.progs.values()],
        "maps": [asdict(m) for m in inv.maps.values()],
    }


def _sample(inv: bpfobjects.Inventory) -> dict[int, tuple[int, int]]:
    return {pid: bpfobjects.prog_run_stats(fd) for pid, fd in inv.prog_fds.items()}


def snapshot(bpffs: str, count_entries: bool = True) -> dict[str, Any]:
    """Inventory with cumulative run counters, no sampling window (for metrics scrapes)."""
    inv = bpfobjects.discover(bpffs, count_entries)
    try:
        now = _sample(inv)
        data = inventory_dict(inv)
    finally:
        inv.close()
    for p in data["programs"]:
        p["run_time_ns"], p["run_cnt"] = now.get(p["id"], (p["run_time_ns"], p["run_cnt"]))
    data["totals"] = totals(data["programs"], data["maps"])
    return data


def collect(bpffs: str, interval: float) -> dict[str, Any]:
    """Sample every program and map reachable from the pins under `bpffs` over `interval` s.

    Returns a JSON-able dict: programs, maps, totals, gadget_view, timestamp, interval,
    plus ncpu, wall_ns, stats_method and bpffs.
    """
    if interval <= 0:
        raise RuntimeError(f"interval must be > 0 seconds (got {interval}); try --interval 1")
    ncpu = os.cpu_count() or 1
    # programs first (no map walk, so the window starts at once); maps and entries are
    # read after the window, so they show the state the window ended in
    progs = bpfobjects.discover(bpffs, count_entries=False)
    try:
        with stats_enabled() as method:
            before = _sample(progs)
            t0 = time.monotonic_ns()
            time.sleep(interval)
            after = _sample(progs)
            wall_ns = time.monotonic_ns() - t0
    finally:
        progs.close()
    inv = bpfobjects.discover(bpffs)
    try:
        data = inventory_dict(inv)
        for pid, counters in _sample(inv).items():
            after.setdefault(pid, counters)  # loaded during the window: measured from zero
    finally:
        inv.close()
    meta = {"timestamp": time.time(), "interval": interval, "bpffs": bpffs, "stats_method": method}
    return build_report(data, before, after, wall_ns, ncpu, meta)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def render(report: dict[str, Any]) -> str:
    """A human table: programs, maps (inner maps folded under their outer map), totals."""
    lines = [
        f"{report['bpffs']}  interval {report['interval']:.2f}s  ncpu {report['ncpu']}  "
        f"stats via {report['stats_method']}",
        "",
        f"{'PROG':>6} {'NAME':<16} {'TYPE':<18} {'CPU%core':>9} {'CPU%node':>9} "
        f"{'ns/run':>9} {'runs/s':>10}",
    ]
    for p in report["programs"]:
        ns = f"{p['ns_per_run']:.0f}" if p["ns_per_run"] is not None else "-"
        lines.append(
            f"{p['id']:>6} {p['name'][:16]:<16} {p['type'][:18]:<18} {p['cpu_pct_core']:>9.3f} "
            f"{p['cpu_pct_node']:>9.3f} {ns:>9} {p['runs_per_s']:>10.0f}"
        )
    lines += [
        "",
        f"{'MAP':>6} {'NAME':<16} {'TYPE':<16} {'MAX':>9} {'ENTRIES':>9} {'MEMLOCK':>12}",
    ]
    inner_by_outer: dict[int, list[dict[str, Any]]] = {}
    for m in report["maps"]:
        if m.get("inner_of") is not None:
            inner_by_outer.setdefault(m["inner_of"], []).append(m)
    for m in report["maps"]:
        if m.get("inner_of") is not None:
            continue
        entries = "-" if m["entries"] is None else str(m["entries"])
        lines.append(
            f"{m['id']:>6} {m['name'][:16]:<16} {m['type'][:16]:<16} {m['max_entries']:>9} "
            f"{entries:>9} {_human_bytes(m['memlock_bytes']):>12}"
        )
        inner = inner_by_outer.get(m["id"], [])
        if inner:
            lines.append(
                f"{'':>6}   + {len(inner)} inner map(s): "
                f"{sum(i['entries'] or 0 for i in inner)} entries, "
                f"{_human_bytes(sum(i['memlock_bytes'] for i in inner))}"
            )
    t, g = report["totals"], report["gadget_view"]
    lines += [
        "",
        f"total: {t['programs']} programs, {t['maps']} maps ({t['inner_maps']} inner), "
        f"{t['entries']} entries, maps {_human_bytes(t['maps_bytes'])}, "
        f"programs {_human_bytes(t['programs_bytes'])}, CPU {t['cpu_pct_core']:.3f}% of one "
        f"core ({t['cpu_pct_node']:.3f}% of the node)",
        "gadget view (sum of referenced maps per program): "
        + ", ".join(f"{p['name']} {_human_bytes(p['map_bytes'])}" for p in g["programs"]),
        f"  -> gadget shows {_human_bytes(g['distinct_referenced_bytes'])} distinct; "
        f"truth {_human_bytes(g['truth_bytes'])}; invisible to it "
        f"{_human_bytes(g['invisible_bytes'])} "
        f"(inner maps {_human_bytes(g['invisible_inner_map_bytes'])})",
    ]
    return "\n".join(lines)


def top_command(args: argparse.Namespace) -> int:
    """`kmesh-node top [--json] [--interval S] [--count N]` (count 0 = until interrupted)."""
    n = 0
    while args.count == 0 or n < args.count:
        report = collect(args.bpffs, args.interval)
        if args.json:
            # one object per line when streaming, so `jq` and readers can follow it
            indent = 2 if args.count == 1 else None
            print(json.dumps(report, indent=indent), flush=True)
        else:
            if n:
                print()
            print(render(report), flush=True)
        n += 1
    sys.stdout.flush()
    return 0
