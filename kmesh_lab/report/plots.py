"""The report's charts (matplotlib, Agg, PNG), each drawn only when its data exist.

Every function takes the run (and the published figures) and returns a ``Plot`` with the
PNG bytes, or None when the run holds no data for it. PNGs are written without metadata
so the same data give the same bytes.

The latency and flood plots read records by convention (those suites were not written yet
when this was): ``params.data_plane`` names the data plane; ``params.connections`` with
summary keys ``p50_ms``/``p90_ms``/``p99_ms`` (latency vs connections; ``params.keepalive``
false = new connections, a series of its own); ``params.qps`` with
``total_cpu_pct_node``, ``cpu_pct_node`` or ``cpu_pct_core`` (CPU vs QPS); for the flood
suite ``params.rps`` (``params.block`` when not "base"; ``params.kind`` "throughput" records
are left out) and per-sample ``p50_ms``, ``mean_ms`` or ``avg_ms`` (box plots).
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure as MplFigure

from kmesh_lab.published import Published
from kmesh_lab.report.runs import Run

MiB = 2**20


@dataclass(frozen=True)
class Plot:
    name: str  # file name without .png
    title: str
    caption: str
    png: bytes


def _png(fig: MplFigure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _stat(rec: dict[str, Any], key: str) -> tuple[float, float, float] | None:
    s = rec.get("summary", {}).get(key)
    if not isinstance(s, dict) or s.get("median") is None:
        return None
    return float(s["median"]), float(s["min"]), float(s["max"])


def _errplot(ax: Any, xs: list[float], stats: list[tuple[float, float, float]], **kw: Any) -> None:
    med = [s[0] for s in stats]
    lo = [s[0] - s[1] for s in stats]
    hi = [s[2] - s[0] for s in stats]
    ax.errorbar(xs, med, yerr=[lo, hi], capsize=3, marker="o", **kw)


def _pub_value(pub: Published, fig_id: str) -> Any:
    try:
        return pub.figure(fig_id).value
    except KeyError:
        return None


def ebpf_vs_concurrency(run: Run, pub: Published) -> Plot | None:
    recs = [
        r
        for r in run.records("suite_cpu")
        if r["scenario"].startswith("2_1.") and r.get("params", {}).get("seed_threads")
    ]
    pts = sorted(
        (float(r["params"]["seed_threads"]), e, a)
        for r in recs
        if (e := _stat(r, "ebpf_cpu_pct_node")) and (a := _stat(r, "app_cpu_pct_node"))
    )
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [p[0] for p in pts]
    _errplot(ax, xs, [p[1] for p in pts], label="eBPF, this lab (median, min-max)")
    _errplot(ax, xs, [p[2] for p in pts], label="app, this lab", linestyle="--")
    seed_e = [(x, _pub_value(pub, f"cpu.2_1.ebpf_cpu.threads_{int(x)}")) for x in xs]
    seed_a = [(x, _pub_value(pub, f"cpu.2_1.app_cpu.threads_{int(x)}")) for x in xs]
    seed_e = [(x, v) for x, v in seed_e if isinstance(v, int | float)]
    seed_a = [(x, v) for x, v in seed_a if isinstance(v, int | float)]
    if seed_e:
        ax.plot(*zip(*seed_e, strict=True), "s-", label="eBPF, seed table 2.1")
    if seed_a:
        ax.plot(*zip(*seed_a, strict=True), "s:", label="app, seed table 2.1")
    ax.set_xscale("log")
    ax.set_xlabel("seed's load threads (the lab scales connections to its node)")
    ax.set_ylabel("CPU, % of the node")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return Plot(
        "ebpf_cpu_vs_concurrency",
        "eBPF and app CPU vs concurrency (case 2.1, no pod limit)",
        "Percent of the whole node: the seed's node had 8 cores, this one "
        f"{recs[0].get('environment', {}).get('cpu', {}).get('cores', '?')}.",
        _png(fig),
    )


def cpu_vs_limit(run: Run, _pub: Published) -> Plot | None:
    recs = [
        r
        for r in run.records("suite_cpu")
        if r["scenario"][:3] in ("1_1", "1_2", "1_3") and _stat(r, "limit_pct_core")
    ]
    rows = [
        (r["scenario"], a, e, _stat(r, "limit_pct_core"))
        for r in recs
        if (a := _stat(r, "app_cpu_pct_core")) and (e := _stat(r, "ebpf_cpu_pct_core"))
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [r[0] for r in rows]
    xs = list(range(len(rows)))
    app = [r[1][0] for r in rows]
    ebpf = [r[2][0] for r in rows]
    ax.bar(xs, app, label="app (median)")
    ax.bar(xs, ebpf, bottom=app, label="eBPF (median)")
    tops = [r[1][0] + r[2][0] for r in rows]
    for x, top, r in zip(xs, tops, rows, strict=True):
        lim = r[3][0] if r[3] else None
        if lim is not None:
            ax.hlines(lim, x - 0.4, x + 0.4, colors="red", linestyles="--")
        ax.text(x, top, f"{top:.0f}%", ha="center", va="bottom", fontsize=8)
    ax.plot([], [], "r--", label="pod CPU limit")
    ax.set_xticks(xs, names, rotation=15, fontsize=7)
    ax.set_ylabel("CPU, % of one core")
    ax.legend(fontsize=8)
    return Plot(
        "cpu_vs_pod_limit",
        "App + eBPF CPU against the pod limit (cases 1.1-1.3)",
        "Stacked medians of the pod's app CPU and its eBPF run time; the dashed line is the "
        "pod's CPU limit.",
        _png(fig),
    )


def memory_vs_services(run: Run, pub: Published) -> Plot | None:
    recs = [r for r in run.records("suite_scaling") if r.get("params", {}).get("phase") == "up"]
    recs += [r for r in run.records("suite_memory") if r["scenario"].startswith("services=")]
    pts = sorted(
        (float(s[0]), b, g)
        for r in recs
        if (s := _stat(r, "services"))
        and (b := _stat(r, "bpf_bytes"))
        and (g := _stat(r, "gadget_sum_bytes"))
    )
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [p[0] for p in pts]
    ax.plot(xs, [p[1][0] / MiB for p in pts], "o-", label="kmesh_node, true total (all maps)")
    ax.plot(xs, [p[2][0] / MiB for p in pts], "o--", label="kmesh_node, gadget-style view")
    flat = _pub_value(pub, "memory.1.ebpf_memory_constant")
    if isinstance(flat, int | float):
        ax.axhline(
            flat, color="grey", linestyle=":", label=f"Kmesh 0.4 published ({flat} MB, flat)"
        )
    total = _pub_value(pub, "scaling.setup.services_total")
    sums = defaultdict(float)
    try:
        bpftool = pub.by_experiment("scaling.bpftool")
    except KeyError:
        bpftool = []
    for f in bpftool:
        if f.unit == "bytes" and isinstance(f.value, list) and set(f.labels) == {"before", "after"}:
            for lab, v in zip(f.labels, f.value, strict=True):
                sums[lab] += v
    if sums and isinstance(total, int | float):
        ax.plot(
            [0, total],
            [sums["before"] / MiB, sums["after"] / MiB],
            "s-",
            label="Kmesh 0.5 bpftool total (seed 002)",
        )
    ax.set_yscale("log")
    ax.set_xlabel("services")
    ax.set_ylabel("BPF memory, MiB (log)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return Plot(
        "bpf_memory_vs_services",
        "BPF memory vs number of services",
        "The gadget-style view sums the maps each program references (inner maps of a "
        "map-in-map are invisible to it); the true total counts every map.",
        _png(fig),
    )


def _plane(rec: dict[str, Any]) -> str | None:
    p = rec.get("params", {})
    return p.get("data_plane") or p.get("dataplane") or p.get("plane")


def latency_vs_connections(run: Run, _pub: Published) -> Plot | None:
    series: dict[str, list[tuple[float, dict[str, float]]]] = defaultdict(list)
    for r in run.records("suite_latency"):
        plane, conns = _plane(r), r.get("params", {}).get("connections")
        if plane is None or not isinstance(conns, int | float):
            continue
        pcts = {k: s[0] for k in ("p50_ms", "p90_ms", "p99_ms") if (s := _stat(r, k))}
        # params.keepalive false = one request per TCP connection: a series of its own
        if r["params"].get("keepalive") is False:
            plane = f"{plane} (new conn.)"
        if pcts:
            series[plane].append((float(conns), pcts))
    if not series:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True)
    for ax, key in zip(axes, ("p50_ms", "p90_ms", "p99_ms"), strict=True):
        for plane in sorted(series):
            pts = sorted((x, p[key]) for x, p in series[plane] if key in p)
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", label=plane)
        ax.set_xscale("log")
        ax.set_title(key.replace("_ms", ""))
        ax.set_xlabel("connections")
        ax.set_ylabel("latency, ms")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return Plot(
        "latency_vs_connections",
        "Latency percentiles vs connections per data plane",
        "Medians over repetitions.",
        _png(fig),
    )


def cpu_vs_qps(run: Run, _pub: Published) -> Plot | None:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in run.records("suite_latency"):
        plane, qps = _plane(r), r.get("params", {}).get("qps")
        if plane is None or not isinstance(qps, int | float) or not qps:
            continue
        for key in ("total_cpu_pct_node", "cpu_pct_node", "cpu_pct_core"):
            if s := _stat(r, key):
                series[plane].append((float(qps), s[0]))
                break
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for plane in sorted(series):
        ax.plot(*zip(*sorted(series[plane]), strict=True), "o-", label=plane)
    ax.set_xscale("log")
    ax.set_xlabel("requests per second")
    ax.set_ylabel("CPU (median)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return Plot(
        "cpu_vs_qps", "CPU at equal QPS per data plane", "Medians over repetitions.", _png(fig)
    )


def flood_boxes(run: Run, _pub: Published) -> Plot | None:
    groups: dict[str, list[float]] = {}
    for r in run.records("suite_flood"):
        plane = _plane(r)
        # one value per repetition: its p50, else its mean (a sample may carry all three)
        keys = ("p50_ms", "mean_ms", "avg_ms")
        vals = [
            float(next(s[k] for k in keys if k in s))
            for s in r.get("samples", [])
            if isinstance(s, dict) and any(k in s for k in keys)
        ]
        params = r.get("params", {})
        if plane and vals and params.get("kind") != "throughput":
            rps = params.get("rps")
            # the flood measures iptables in each block (beside kmesh_node, then _accel)
            block = params.get("block", "base")
            label = plane if block == "base" else f"{plane} ({block})"
            label += ", keepalive" if params.get("keepalive") else ""
            groups[f"{label}\n{rps} rps" if rps else label] = vals
    if not groups:
        return None
    names = sorted(groups)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.7 * len(names)), 4.5))
    ax.boxplot([groups[n] for n in names])
    ax.set_xticks(range(1, len(names) + 1), names, fontsize=7, rotation=60, ha="right")
    ax.set_ylabel("latency per repetition, ms")
    return Plot(
        "flood_ab", "Flood suite: A/B distributions", "One point per repetition.", _png(fig)
    )


PLOTS: tuple[tuple[str, str, Callable[[Run, Published], Plot | None]], ...] = (
    ("suite_cpu", "eBPF CPU vs concurrency", ebpf_vs_concurrency),
    ("suite_cpu", "App + eBPF CPU vs pod limit", cpu_vs_limit),
    ("suite_memory", "BPF memory vs number of services", memory_vs_services),
    ("suite_latency", "Latency percentiles vs connections", latency_vs_connections),
    ("suite_latency", "CPU vs QPS", cpu_vs_qps),
    ("suite_flood", "Flood A/B box plots", flood_boxes),
)
