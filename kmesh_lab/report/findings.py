"""The sentences at the top of the report, each generated from the run's data.

A sentence appears only when the records it reads exist; every number in it is read from
the run (or, for a published comparison, from reference/published.yml).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from kmesh_lab.published import Published
from kmesh_lab.report.runs import Run


def _median(rec: dict[str, Any] | None, key: str) -> float | None:
    if rec is None:
        return None
    val = rec.get("summary", {}).get(key, {}).get("median")
    return float(val) if isinstance(val, int | float) else None


def _max(rec: dict[str, Any], key: str) -> float | None:
    val = rec.get("summary", {}).get(key, {}).get("max")
    return float(val) if isinstance(val, int | float) else None


def pod_limit(run: Run, _pub: Published) -> str | None:
    """Did app + eBPF stay inside the pod's CPU limit (seed cases 1.x)?"""
    limited = [
        r
        for r in run.records("suite_cpu")
        if _median(r, "limit_pct_core") and _max(r, "pod_cpu_pct_core")
    ]
    if not limited:
        return None
    # Over the limit = above limit + the scheduler's slack the suite measured (CFS period).
    over = []
    for r in limited:
        limit = _median(r, "limit_pct_core") or 0.0
        slack = _median(r, "limit_slack_pct") or 0.0
        if (_max(r, "pod_cpu_pct_core") or 0.0) > limit * (1 + slack / 100):
            over.append(r["scenario"])
    worst = max(limited, key=lambda r: _max(r, "pod_cpu_pct_core") or 0.0)
    ebpf = max(_max(r, "ebpf_share_of_pod_cpu_pct") or 0.0 for r in limited)
    verdict = (
        "stayed within its CPU limit in every repetition"
        if not over
        else f"went over its CPU limit in {', '.join(sorted(over))}"
    )
    slack = _median(worst, "limit_slack_pct")
    slack_txt = f", counting the {slack:.1f}% scheduler slack the suite measured" if slack else ""
    return (
        f"In the {len(limited)} CPU-limited scenarios, the pod (app + eBPF) {verdict}"
        f"{slack_txt}: at most {_max(worst, 'pod_cpu_pct_core'):.1f}% of one core against a "
        f"limit of {_median(worst, 'limit_pct_core'):.0f}% ({worst['scenario']}); eBPF was at "
        f"most {ebpf:.1f}% of the pod's CPU."
    )


def ebpf_sweep(run: Run, pub: Published) -> str | None:
    recs = [r for r in run.records("suite_cpu") if r["scenario"].startswith("2_1.")]
    vals = [(r, _median(r, "ebpf_cpu_pct_node")) for r in recs]
    vals = [(r, v) for r, v in vals if v is not None]
    if not vals:
        return None
    top, top_v = max(vals, key=lambda rv: rv[1])
    try:
        seed = pub.figure("cpu.2_1.ebpf_cpu_max_fortio")
        cores = seed.conditions.get("node_cores", "?")
        seed_txt = f" (the seed published up to {seed.value}% of its {cores}-core node)"
    except KeyError:
        seed_txt = ""
    cores = top.get("environment", {}).get("cpu", {}).get("cores")
    return (
        f"Without a pod limit, eBPF used at most {top_v:.2f}% of this {cores}-core node "
        f"(median, {top['scenario']}){seed_txt}."
    )


def stress(run: Run, _pub: Published) -> str | None:
    rec = run.record("suite_cpu", "2_2.stress.loops=65535")
    ctl = run.record("suite_cpu", "2_2.control.loops=0")
    v = _median(rec, "ebpf_cpu_pct_node")
    if rec is None or v is None:
        return None
    loops = rec["params"].get("stress_loops")
    parts = f"With a {loops}-iteration loop in connect4, eBPF took {v:.1f}% of the node"
    c = _median(ctl, "ebpf_cpu_pct_node")
    if c is not None:
        parts += f" (without it: {c:.2f}%)"
    p99 = _median(rec, "probe_http_p99_ms")
    errs = _max(rec, "probe_errors")
    if p99 is not None:
        parts += (
            f"; the responsiveness probe's HTTP p99 was {p99:.1f} ms with {errs or 0:.0f} errors"
        )
    return parts + "."


def _growth(points: list[tuple[float, float]]) -> float | None:
    if len({x for x, _ in points}) < 2:
        return None
    return statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope


def memory_growth(run: Run, pub: Published) -> str | None:
    recs = [r for r in run.records("suite_scaling") if r.get("params", {}).get("phase") == "up"]
    recs += [r for r in run.records("suite_memory") if r["scenario"].startswith("services=")]
    pts = [
        (float(r["summary"]["services"]["median"]), b)
        for r in recs
        if "services" in r.get("summary", {}) and (b := _median(r, "bpf_bytes")) is not None
    ]
    slope = _growth(pts)
    if slope is None:
        return None
    gpts = [
        (float(r["summary"]["services"]["median"]), g)
        for r in recs
        if "services" in r.get("summary", {}) and (g := _median(r, "gadget_sum_bytes")) is not None
    ]
    gslope = _growth(gpts)
    most = max(x for x, _ in pts)
    text = (
        f"True BPF memory grew by {slope * 1000 / 1024:.1f} KiB per 1,000 services "
        f"(least-squares over {len(pts)} points up to {most:.0f} services)"
    )
    if gslope is not None:
        text += f", while the gadget-style per-program view grew by {gslope * 1000 / 1024:.1f} KiB"
    try:
        flat = pub.figure("memory.1.ebpf_memory_constant")
        text += f"; Kmesh's published figure is a flat {flat.value} {flat.unit}"
    except KeyError:
        pass
    return text + "."


def smoke_vip(run: Run, _pub: Published) -> str | None:
    vip = run.record("smoke", "service-new-connection")
    pod = run.record("smoke", "new-connection")
    a, b = _median(vip, "qps"), _median(pod, "qps")
    if a is None or b is None or not b:
        return None
    return (
        f"Smoke test, new connection per request: {a:,.0f} requests/s through the service VIP "
        f"(rewritten by kmesh_node's connect4) vs {b:,.0f} to the pod IP directly "
        f"({a / b:.2f}x)."
    )


def flood_throughput(run: Run, _pub: Published) -> str | None:
    """The flood's new-connection rate kmesh / iptables-nft per stage against its target,
    with the short HTTP requests' ratio beside it (kmesh_lab.floodrun compare)."""
    by_stage: dict[str, list[str]] = {}
    lead: dict[str, str] = {}
    ratios = [r for r in run.records("suite_flood") if ".throughput_ratio." in r["scenario"]]
    # kmesh_node before kmesh_node_accel
    for rec in sorted(ratios, key=lambda r: (r["params"]["stage"], r["params"]["b"])):
        s, params = rec["samples"][0], rec["params"]
        http = run.record(
            "suite_flood", rec["scenario"].replace(".throughput_ratio.", ".http_throughput_ratio.")
        )
        met = "met" if s["meets_target"] else "NOT met"
        text = (
            f"{params['b']} {s['ratio']:.2f}x (95% CI {s['ratio_ci_low']:.2f}-"
            f"{s['ratio_ci_high']:.2f}x; target {s['target_ratio']:g}x {met}"
        )
        if http is not None:
            text += f"; short HTTP requests {http['samples'][0]['ratio']:.2f}x"
        stage = params["stage"]
        by_stage.setdefault(stage, []).append(text + ")")
        if stage not in lead:
            setup = run.record("suite_flood", f"{stage}.setup") or {"params": {}}
            lead[stage] = (
                f"Flood stage {stage}, {params['services']:,} services "
                f"({s['iptables_entries']:,} iptables entries counted in the kernel): "
                "new-connection rate (TCP connect + close) against "
                f"iptables-{setup['params'].get('backend', 'nft')} kube-proxy rules"
            )
    if not by_stage:
        return None
    return " ".join(f"{lead[st]}: {', '.join(parts)}." for st, parts in by_stage.items())


def flood_verdicts(run: Run, _pub: Published) -> str | None:
    """Per stage (base block), at which rates kmesh_node's p50 latency and the lab pods'
    CPU differ from iptables beyond the noise: the question seed 003 left open."""
    what = {"p50_ms": "p50 latency", "lab_pods_cpu_pct_node": "the lab pods' CPU"}
    compared = [
        r
        for r in run.records("suite_flood")
        if ".compare." in r["scenario"]
        and r["params"].get("block") == "base"
        and r["params"].get("metric") in what
    ]
    if not compared:
        return None
    compared.sort(key=lambda r: (r["params"]["stage"], r["params"]["metric"], r["params"]["rps"]))
    found: dict[tuple[str, str], dict[str, list[str]]] = {}
    for rec in compared:
        params, s = rec["params"], rec["samples"][0]
        rate = f"{params['rps']} rps" + (" keepalive" if params.get("keepalive") else "")
        side = "within the noise"
        if s["exceeds_noise"]:
            side = "lower" if s["median_b"] < s["median_a"] else "higher"
        found.setdefault((params["stage"], params["metric"]), {}).setdefault(side, []).append(rate)
    pairs = {r["params"]["stage"]: r["samples"][0]["n_a"] for r in compared}
    parts = [
        f"{what[metric]} ({stage}, {pairs[stage]} pairs per rate) "
        + "; ".join(f"{side} at {', '.join(rates)}" for side, rates in sides.items())
        for (stage, metric), sides in found.items()
    ]
    return (
        "Flood A/B, kmesh_node against iptables in interleaved pairs (Mann-Whitney U and a "
        "bootstrap CI must both separate them to exceed the noise): " + "; ".join(parts) + "."
    )


FINDINGS: tuple[Callable[[Run, Published], str | None], ...] = (
    pod_limit,
    ebpf_sweep,
    stress,
    memory_growth,
    smoke_vip,
    flood_throughput,
    flood_verdicts,
)


def findings(run: Run, pub: Published) -> list[str]:
    return [text for f in FINDINGS if (text := f(run, pub))]
