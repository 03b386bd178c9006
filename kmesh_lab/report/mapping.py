"""Which measured metric answers which published figure: the one table the report uses.

``FIGURES`` maps a figure id of reference/published.yml to a *source* of the measured value;
``PREFIXES`` does the same for families of ids; a figure in neither gets the verdict
"not mapped" (its suite ran, but nothing here says which metric answers it) or "not run".

Sources:

- ``Metric(suite, scenario, key, unit)``: the record's ``summary[key]`` (median, min, max, n
  over its repetitions), converted from ``unit`` to the figure's unit.
- ``MaxOver(suite, prefix, key, unit)``: of the records whose scenario starts with
  ``prefix``, the one with the highest median (a published "at most" figure).
- ``Largest(suite, phase, key, unit)``: the record of a phase (params.phase, e.g. the
  scaling suite's "up") with the most services.
- ``Param(suite, scenario_prefix, key, unit)``: a setting the lab ran with (params), for
  figures that publish a setting (loop iterations, batch size): n = 1, no spread.
- ``NoCounterpart(reason)``: the lab measures nothing comparable; the reason is shown.

``label`` picks one element of a list-valued figure (e.g. "after" of before/after);
``also`` names a second metric of the same record shown beside the compared one (the true
BPF total beside the gadget-style view the seeds' tool gave).
Unit conversions are the ``CONVERSIONS`` table: MB is read as MiB because Inspektor Gadget,
the seeds' memory tool, prints binary units (seed 002 shows KiB and MiB).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kmesh_lab.report.runs import Run

# (measured unit, figure unit) -> factor
CONVERSIONS: dict[tuple[str, str], float] = {
    ("bytes", "bytes"): 1.0,
    ("bytes", "KiB"): 1 / 1024,
    ("bytes", "MiB"): 1 / 2**20,
    ("bytes", "MB"): 1 / 2**20,
    ("s", "s"): 1.0,
    ("s", "minutes"): 1 / 60,
    ("ms", "ms"): 1.0,
    ("ms", "s"): 1e-3,
    ("s", "ms"): 1e3,
    ("pct_core", "vCPU"): 1e-2,
}


class MappingError(RuntimeError):
    """The mapping table asks for a conversion it does not know."""


def convert(value: float, unit: str, to: str) -> float:
    if unit == to:
        return value
    try:
        return value * CONVERSIONS[(unit, to)]
    except KeyError:
        raise MappingError(
            f"no conversion from {unit!r} to {to!r}: add it to CONVERSIONS in "
            f"kmesh_lab/report/mapping.py"
        ) from None


@dataclass(frozen=True)
class Measured:
    median: float
    min: float
    max: float
    n: int
    where: str  # suite / scenario / metric, for the reader
    record: dict[str, Any]
    also: tuple[str, float] | None = None  # (metric, median in the same unit) shown beside


@dataclass(frozen=True)
class Metric:
    suite: str
    scenario: str
    key: str
    unit: str | None = None  # None: already in the figure's unit
    label: str | None = None
    also: str | None = None  # a second metric of the record shown beside (same unit)


@dataclass(frozen=True)
class MaxOver:
    suite: str
    prefix: str
    key: str
    unit: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Largest:
    suite: str
    phase: str
    key: str
    unit: str | None = None
    label: str | None = None
    also: str | None = None


@dataclass(frozen=True)
class Param:
    suite: str
    prefix: str
    key: str
    unit: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class NoCounterpart:
    reason: str
    suite: str | None = None  # the suite whose run makes this reason apply (None: always)


Source = Metric | MaxOver | Largest | Param | NoCounterpart

_C11 = "1_1.apps=1x1000m"
_C12 = "1_2.apps=4x250m"
_C13EN = "1_3.loops=65535.apps=1x1000m"
_C13ZH = "1_3.loops=10000.apps=4x250m"
_C22 = "2_2.stress.loops=65535"

FIGURES: dict[str, Source] = {
    # ---- CPU (seeds 000/001); the lab's CPU from cgroup cpu.stat, eBPF from run-time stats
    "cpu.1_1.pod_limit_share_of_node": Metric("suite_cpu", _C11, "limit_pct_node"),
    "cpu.1_1.ebpf_cpu_one_core.figure.en": Metric("suite_cpu", _C11, "ebpf_cpu_pct_core"),
    "cpu.1_1.ebpf_cpu_one_core.conclusion.en": Metric("suite_cpu", _C11, "ebpf_cpu_pct_core"),
    "cpu.1_1.ebpf_cpu_node.en": Metric("suite_cpu", _C11, "ebpf_cpu_pct_node"),
    "cpu.1_1.user_cpu_node.zh": Metric("suite_cpu", _C11, "pod_user_pct_node"),
    "cpu.1_1.kernel_cpu_node.zh": Metric("suite_cpu", _C11, "pod_system_pct_node"),
    "cpu.1_1.total_cpu_node.zh": Metric("suite_cpu", _C11, "pod_cpu_pct_node"),
    "cpu.1_2.ebpf_cpu_one_core.en": Metric("suite_cpu", _C12, "ebpf_cpu_pct_core"),
    "cpu.1_2.ebpf_cpu_node.en": Metric("suite_cpu", _C12, "ebpf_cpu_pct_node"),
    "cpu.1_2.user_cpu_node.zh": Metric("suite_cpu", _C12, "pod_user_pct_node"),
    "cpu.1_2.kernel_cpu_node.zh": Metric("suite_cpu", _C12, "pod_system_pct_node"),
    "cpu.1_2.total_cpu_node.zh": Metric("suite_cpu", _C12, "pod_cpu_pct_node"),
    "cpu.1_3.loop_iterations.en": Param("suite_cpu", _C13EN, "stress_loops"),
    "cpu.1_3.loop_iterations.zh": Param("suite_cpu", _C13ZH, "stress_loops"),
    "cpu.1_3.ebpf_cpu.en": Metric("suite_cpu", _C13EN, "ebpf_cpu_pct_node"),
    "cpu.1_3.user_cpu_node.zh": Metric("suite_cpu", _C13ZH, "pod_user_pct_node"),
    "cpu.1_3.kernel_cpu_node.zh": Metric("suite_cpu", _C13ZH, "pod_system_pct_node"),
    "cpu.1_3.total_cpu_node.zh": Metric("suite_cpu", _C13ZH, "pod_cpu_pct_node"),
    **{
        f"cpu.2_1.{kind}_cpu.threads_{n}": Metric(
            "suite_cpu", f"2_1.threads={n}", f"{kind}_cpu_pct_node"
        )
        for kind in ("app", "ebpf")
        for n in (100, 500, 1000, 3000)
    },
    "cpu.2_1.node_saturation_threads": NoCounterpart(
        "the lab does not search for the saturating thread count: it scales the seed's "
        "sweep to this node and records node_busy_pct_node at each point (see the plot)"
    ),
    "cpu.2_1.ebpf_cpu_max_fortio": MaxOver("suite_cpu", "2_1.threads=", "ebpf_cpu_pct_node"),
    "cpu.2_2.loop_iterations": Param("suite_cpu", _C22, "stress_loops"),
    "cpu.2_2.ebpf_cpu_at_saturation": Metric("suite_cpu", _C22, "ebpf_cpu_pct_node"),
    "cpu.2_2.duration": NoCounterpart(
        "a duration of the seed's run, not a measurement; the lab's stress duration is the "
        "profile's (window_s x windows_per_run in the scenario's params)"
    ),
    # ---- memory (seeds 000/001): the seeds' tool is Inspektor Gadget, so the gadget view
    "memory.1.ebpf_memory.services_1": Metric(
        "suite_memory", "services=1", "gadget_sum_bytes", "bytes", also="bpf_bytes"
    ),
    "memory.1.ebpf_memory.services_100": Metric(
        "suite_memory", "services=100", "gadget_sum_bytes", "bytes", also="bpf_bytes"
    ),
    "memory.1.ebpf_memory.services_1000": Metric(
        "suite_memory", "services=1000", "gadget_sum_bytes", "bytes", also="bpf_bytes"
    ),
    "memory.1.ebpf_memory_constant": Metric(
        "suite_memory", "services=1000", "gadget_sum_bytes", "bytes", also="bpf_bytes"
    ),
    "memory.2.ebpf_memory_under_load": Metric(
        "suite_memory",
        "load.services=1",
        "gadget_sum_bytes_during_max",
        "bytes",
        also="bpf_bytes_during_max",
    ),
    # ---- scaling (seed 002)
    "scaling.setup.batch_size": Param("suite_scaling", "up.", "batch"),
    "scaling.setup.services_total": Largest("suite_scaling", "up", "services"),
    "scaling.gadget.mapmemory_constant": Largest(
        "suite_scaling", "up", "gadget_sum_bytes", "bytes", also="bpf_bytes"
    ),
    "scaling.bpftool.memlock.inner_maps": Largest(
        "suite_scaling", "up", "bpf_inner_maps_bytes", "bytes", label="after"
    ),
    "scaling.bpftool.inner_map_count": Largest(
        "suite_scaling", "up", "bpf_inner_maps", label="after"
    ),
    # ---- latency (seed 004 + ANCHORS.md): suite_latency, one record per plane and point.
    # The blog's "Kmesh" is the kmesh_node plane, its kube-proxy the iptables (nft) plane;
    # latency at N connections = the keepalive load (fortio's default) at N connections.
    **{
        f"latency.connections.p90.{fig}.c{n}": Metric(
            "suite_latency", f"conn.{plane}.c={n}.keepalive", "p90_ms", "ms"
        )
        for fig, plane in (("sidecar", "sidecar"), ("kmesh", "kmesh_node"))
        for n in (1024, 4096)
    },
    # CPU at equal QPS: everything the request path costs on the node (apps + proxies; the
    # eBPF time is inside the apps'), as dstat in the Kmesh perf scripts shows the node.
    "latency.cpu_qps.sidecar": Metric(
        "suite_latency", "cpu.sidecar.qps=100", "total_cpu_pct_node", label="qps_100"
    ),
    "latency.cpu_qps.kmesh": Metric(
        "suite_latency", "cpu.kmesh_node.qps=100", "total_cpu_pct_node", label="qps_100"
    ),
    "latency.cpu_qps.kmesh_close_to_kube_proxy": Metric(
        "suite_latency", "compare.qps=1000", "cpu_ratio_kmesh_to_kube_proxy"
    ),
    "latency.connections.kmesh_close_to_kube_proxy": Metric(
        "suite_latency", "compare.c=128.keepalive", "p90_ratio_kmesh_to_kube_proxy"
    ),
    "latency.claims.latency_reduction_vs_sidecar": Metric(
        "suite_latency", "compare.c=128.keepalive", "p90_reduction_vs_sidecar_pct"
    ),
    "latency.claims.hops": NoCounterpart(
        "a property of the architectures, not a measurement: the lab's sidecar plane has the "
        "proxy hops (client -> client sidecar -> server sidecar -> server), the kmesh planes none",
        suite="suite_latency",
    ),
    "latency.claims.sockmap_sidecar_speedup": NoCounterpart(
        "the lab accelerates the kmesh plane's pod-to-pod sockets (kmesh_node_accel), not a "
        "sidecar's; compare conn.kmesh_node_accel.* with conn.kmesh_node.* in suite_latency",
        suite="suite_latency",
    ),
    "latency.istio_benchmark.sidecar_cpu": Metric(
        "suite_latency", "cpu.sidecar.qps=1000", "proxy_cpu_max_pct_core", "pct_core"
    ),
    "latency.istio_benchmark.sidecar_memory": Metric(
        "suite_latency", "cpu.sidecar.qps=1000", "proxy_rss_max_bytes", "bytes"
    ),
    # Istio's method: the sidecar's p90/p99 minus the no-mesh baseline's, 16 connections at
    # 1000 requests/s (the CPU load at 1000 QPS has exactly those settings)
    "latency.istio_benchmark.sidecar_added_p90": Metric(
        "suite_latency", "compare.qps=1000", "sidecar_added_p90_ms", "ms"
    ),
    "latency.istio_benchmark.sidecar_added_p99": Metric(
        "suite_latency", "compare.qps=1000", "sidecar_added_p99_ms", "ms"
    ),
    "latency.istio_benchmark.ztunnel_cpu": NoCounterpart(
        "no ztunnel (Istio ambient) data plane in the lab", suite="suite_latency"
    ),
    "latency.istio_benchmark.ztunnel_memory": NoCounterpart(
        "no ztunnel (Istio ambient) data plane in the lab", suite="suite_latency"
    ),
    # ---- flood (seed 003): suite_flood; the thesis' 50 pods x 500 services is the full
    # profile's "thesis" stage, its Calico (iptables) the iptables plane, keepalive = k6's.
    "flood.setup.iptables_entries": Metric("suite_flood", "thesis.setup", "iptables_entries"),
    "flood.setup.iptables_overhead_minutes": Metric("suite_flood", "thesis.setup", "apply_s", "s"),
    "flood.setup.flooder_sweet_spot": Param("suite_flood", "thesis.setup", "pods", label="pods"),
    "flood.latency.calico_range": Metric(
        "suite_flood", "thesis.base.iptables.rps=200.ka=on", "p50_ms", "ms"
    ),
    "flood.setup.cluster_size": NoCounterpart(
        "the lab is one host (pods are network namespaces), not a 3-node cluster",
        suite="suite_flood",
    ),
    "flood.setup.flooder_first": NoCounterpart(
        "the lab floods with the thesis' later 50 pods x 500 services (flooder_sweet_spot), "
        "not the first 250 x 250",
        suite="suite_flood",
    ),
    "flood.setup.kube_proxy_restore_minutes": NoCounterpart(
        "for the 250 x 250 flood the lab does not run; the 50 x 500 flood's one restore is "
        "timed (iptables_overhead_minutes)",
        suite="suite_flood",
    ),
    "flood.setup.kube_proxy_restore_cpu": NoCounterpart(
        "no kube-proxy process runs: the lab applies its rules in one iptables-restore "
        "(timed in <stage>.setup apply_s), it does not resync them",
        suite="suite_flood",
    ),
    "flood.setup.nginx_vs_httpbin": NoCounterpart(
        "the lab's server pods run nginx only (the thesis' later setup)", suite="suite_flood"
    ),
    "flood.setup.request_rates": NoCounterpart(
        "a setting: the lab runs the same 200/1000/1500 rps (params.rps of the latency records)",
        suite="suite_flood",
    ),
    "flood.setup.request_timeout": NoCounterpart(
        "a setting: the lab's load has the same 2 s per-request timeout (params.timeout)",
        suite="suite_flood",
    ),
    "flood.setup.test_pairs": NoCounterpart(
        "a setting: the lab interleaves 5 (quick) to 10 (full) A/B pairs per rate "
        "(expected_samples of each record)",
        suite="suite_flood",
    ),
    "flood.latency.merbridge_range": NoCounterpart(
        "no Istio sidecar + Merbridge plane; the nearest is kmesh_node_accel (sockmap between "
        "pods), in the <stage>.accel.* records",
        suite="suite_flood",
    ),
    "flood.latency.no_improvement": NoCounterpart(
        "a statement; the lab's answer is computed per rate in <stage>.compare.* records "
        "(Mann-Whitney U and a bootstrap CI: 'exceeds noise' or 'within noise')",
        suite="suite_flood",
    ),
    "flood.cpu.merbridge_max_cpu_range": NoCounterpart(
        "no Merbridge plane; max node CPU of kmesh_node_accel is in <stage>.accel.* records",
        suite="suite_flood",
    ),
    "flood.cpu.paired_no_clear_difference": NoCounterpart(
        "a statement; the lab's answer is <stage>.compare.*.max_node_cpu_pct (same test)",
        suite="suite_flood",
    ),
}

PREFIXES: dict[str, Source] = {
    "scaling.gadget.mapmemory.": NoCounterpart(
        "a Kmesh 0.5 program's MAPMEMORY; kmesh_node has other programs (its gadget-style "
        "total is compared under scaling.gadget.mapmemory_constant and plotted)"
    ),
    "scaling.bpftool.memlock.": NoCounterpart(
        "a Kmesh 0.5 map group; kmesh_node has no map of that name (its inner maps are "
        "compared under scaling.bpftool.memlock.inner_maps; all its maps are in the plot)"
    ),
    "scaling.log.": NoCounterpart(
        "a Kmesh 0.5 outer-map scale log line; kmesh_node resizes its own shards "
        "(the resizes counter in suite_scaling's records), with other thresholds"
    ),
}


def source_for(figure_id: str) -> Source | None:
    if figure_id in FIGURES:
        return FIGURES[figure_id]
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        if figure_id.startswith(prefix):
            return PREFIXES[prefix]
    return None


def _stats(record: dict[str, Any], key: str, factor: float, where: str) -> Measured | None:
    summ = record.get("summary", {}).get(key)
    if not isinstance(summ, dict) or summ.get("median") is None:
        return None
    return Measured(
        median=summ["median"] * factor,
        min=summ["min"] * factor,
        max=summ["max"] * factor,
        n=int(summ["n"]),
        where=where,
        record=record,
    )


def _factor(unit: str | None, fig_unit: str) -> float:
    # A statement figure has unit "none": its measured value stays in its own unit.
    return 1.0 if unit is None or fig_unit == "none" else convert(1.0, unit, fig_unit)


def display_unit(source: Source, fig_unit: str) -> str:
    """The unit the measured column is written in."""
    own = getattr(source, "unit", None)
    return (own or "") if fig_unit == "none" else fig_unit


def _with_also(
    got: Measured | None, rec: dict[str, Any], also: str | None, factor: float
) -> Measured | None:
    if got is None or also is None:
        return got
    extra = _stats(rec, also, factor, "")
    if extra is None:
        return got
    return dataclasses.replace(got, also=(also, extra.median))


def measure(source: Source, run: Run, fig_unit: str) -> tuple[Measured | None, str]:
    """The measured value a source points at, or None and why it is missing."""
    if isinstance(source, NoCounterpart):
        if source.suite and not run.records(source.suite):
            return (
                None,
                f"{source.suite} did not run: results/{run.run_id}/{source.suite}.json is absent",
            )
        return None, source.reason
    suite = source.suite
    records = run.records(suite)
    if not records:
        return None, f"{suite} did not run: results/{run.run_id}/{suite}.json is absent"
    factor = _factor(source.unit, fig_unit)
    if isinstance(source, Metric):
        rec = run.record(suite, source.scenario)
        if rec is None:
            return None, f"{suite} has no scenario {source.scenario} in this run"
        got = _stats(rec, source.key, factor, f"{suite} / {source.scenario} / {source.key}")
        return _with_also(got, rec, source.also, factor), (
            "" if got else f"{suite} / {source.scenario} recorded no {source.key}"
        )
    if isinstance(source, MaxOver):
        cands = [
            m
            for r in records
            if r["scenario"].startswith(source.prefix)
            and (m := _stats(r, source.key, factor, f"{suite} / {r['scenario']} / {source.key}"))
        ]
        if not cands:
            return None, f"{suite} has no scenario {source.prefix}* with {source.key}"
        return max(cands, key=lambda m: (m.median, m.where)), ""
    if isinstance(source, Largest):
        phase = [r for r in records if r.get("params", {}).get("phase") == source.phase]
        if not phase:
            return None, f"{suite} has no {source.phase!r} phase in this run"
        rec = max(phase, key=lambda r: (r["params"].get("services", 0), r["scenario"]))
        got = _stats(rec, source.key, factor, f"{suite} / {rec['scenario']} / {source.key}")
        return _with_also(got, rec, source.also, factor), (
            "" if got else f"{suite} / {rec['scenario']} recorded no {source.key}"
        )
    # Param
    for rec in records:
        if rec["scenario"].startswith(source.prefix) and source.key in rec.get("params", {}):
            val = rec["params"][source.key]
            if isinstance(val, int | float) and not isinstance(val, bool):
                v = val * factor
                where = f"{suite} / {rec['scenario']} / params.{source.key} (a setting)"
                return Measured(v, v, v, 1, where, rec), ""
    return None, f"{suite} has no scenario {source.prefix}* with params.{source.key}"
