"""The latency suite's comparisons between planes, per repetition (seed 004's claims).

    python -m kmesh_lab.latencycompare --run-dir D [--suite suite_latency] [--lab JSON]

Reads the run's suite_latency records and writes one `compare.*` record per load point:
    compare.c=<C>.keepalive / compare.c=<C>.new_connection   (latency vs connections)
    compare.qps=<Q>                                          (CPU at equal QPS)
Each sample is one repetition and compares only planes measured in that same repetition
(the planes are interleaved, so they saw the same node), never medians of different
repetitions. A figure is left out when one of its planes has no sample in that repetition.
Records are replaced on every call, so running it again (a resumed run) never duplicates.

Figures (p90 = the load's p90 latency; cpu = total_cpu_pct_node):
    p90_reduction_vs_sidecar_pct        (1 - kmesh_node / sidecar) * 100   (the blog: > 50)
    p90_reduction_accel_vs_sidecar_pct  the same for kmesh_node_accel
    p90_reduction_accel_vs_kmesh_pct    what sockmap acceleration gains over kmesh_node
    p90_ratio_kmesh_to_kube_proxy       kmesh_node / kube_proxy_iptables_nft (blog: ~1)
    p90_ratio_kmesh_to_pod_ip           kmesh_node / pod_ip (no mesh)
    sidecar_added_p90_ms / _p99_ms      sidecar - pod_ip (Istio's "added latency" method)
    kmesh_added_p90_ms                  kmesh_node - pod_ip
    cpu_ratio_kmesh_to_kube_proxy       (CPU loads) kmesh_node / kube_proxy_iptables_nft
    cpu_reduction_vs_sidecar_pct        (CPU loads) (1 - kmesh_node / sidecar) * 100
CPU figures need both planes to have held the requested rate (within 10%).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from kmesh_lab import results

KUBE_PROXY = "kube_proxy_iptables_nft"  # the blog's baseline: kube-proxy, iptables mode
Key = tuple[Any, ...]  # ("conn", connections, keepalive) or ("cpu", qps)
QPS_TOLERANCE = 0.1  # CPU is compared only where the achieved rate is within 10%


def _key(params: dict[str, Any]) -> Key | None:
    if "connections" in params:
        return ("conn", int(params["connections"]), bool(params["keepalive"]))
    if params.get("qps"):
        return ("cpu", int(params["qps"]))
    return None


def scenario(key: Key) -> str:
    if key[0] == "conn":
        return f"compare.c={key[1]}.{'keepalive' if key[2] else 'new_connection'}"
    return f"compare.qps={key[1]}"


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def one_repetition(key: Key, by_plane: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures of one repetition at one load point from each plane's sample."""
    out: dict[str, Any] = {}

    def get(plane: str, metric: str) -> float | None:
        v = by_plane.get(plane, {}).get(metric)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def put(name: str, value: float | None) -> None:
        if value is not None:
            out[name] = value

    kn, sc, ac = (get(p, "p90_ms") for p in ("kmesh_node", "sidecar", "kmesh_node_accel"))
    kp, pod = get(KUBE_PROXY, "p90_ms"), get("pod_ip", "p90_ms")
    if kn is not None and sc:
        put("p90_reduction_vs_sidecar_pct", (1 - kn / sc) * 100)
    if ac is not None and sc:
        put("p90_reduction_accel_vs_sidecar_pct", (1 - ac / sc) * 100)
    if ac is not None and kn:
        put("p90_reduction_accel_vs_kmesh_pct", (1 - ac / kn) * 100)
    if kn is not None and kp is not None:
        put("p90_ratio_kmesh_to_kube_proxy", _ratio(kn, kp))
    if kn is not None and pod is not None:
        put("p90_ratio_kmesh_to_pod_ip", _ratio(kn, pod))
        put("kmesh_added_p90_ms", kn - pod)
    if sc is not None and pod is not None:
        put("sidecar_added_p90_ms", sc - pod)
        sc99, pod99 = get("sidecar", "p99_ms"), get("pod_ip", "p99_ms")
        if sc99 is not None and pod99 is not None:
            put("sidecar_added_p99_ms", sc99 - pod99)
    if key[0] == "cpu":
        # "at the same QPS" only where both planes held the rate (a saturated sidecar that
        # reached 3,000 of 5,000 requests/s is not compared on CPU)
        def held(plane: str) -> float | None:
            q = get(plane, "qps")
            ok = q is not None and abs(q - key[1]) <= QPS_TOLERANCE * key[1]
            return get(plane, "total_cpu_pct_node") if ok else None

        kc, sc_c, kp_c = held("kmesh_node"), held("sidecar"), held(KUBE_PROXY)
        if kc is not None and kp_c is not None:
            put("cpu_ratio_kmesh_to_kube_proxy", _ratio(kc, kp_c))
        if kc is not None and sc_c:
            put("cpu_reduction_vs_sidecar_pct", (1 - kc / sc_c) * 100)
    return out


def compare(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{scenario, params, samples, experiments}] of the comparisons the records allow."""
    # key -> repetition -> plane -> sample
    table: dict[Key, dict[int, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for rec in records:
        params = rec.get("params", {})
        plane, key = params.get("data_plane"), _key(params)
        if plane is None or key is None or rec["scenario"].startswith("compare."):
            continue
        for sample in rec["samples"]:
            if isinstance(sample, dict) and "repetition" in sample:
                table[key][int(sample["repetition"])][plane] = sample
    out: list[dict[str, Any]] = []
    for key in sorted(table, key=str):
        samples = []
        planes: set[str] = set()
        for rep in sorted(table[key]):
            figures = one_repetition(key, table[key][rep])
            if figures:
                samples.append({"repetition": rep, **figures})
                planes |= set(table[key][rep])
        if not samples:
            continue
        if key[0] == "conn":
            params = {"kind": "compare", "at_connections": key[1], "keepalive": key[2]}
            exps = ["latency.claims", "latency.connections"]
        else:
            params = {"kind": "compare", "at_qps": key[1]}
            exps = ["latency.cpu_qps", "latency.istio_benchmark"]
        params.update({"planes": sorted(planes), "kube_proxy_baseline": KUBE_PROXY})
        out.append(
            {"scenario": scenario(key), "params": params, "samples": samples, "experiments": exps}
        )
    return out


def write(run_dir: Path, suite: str, lab: dict[str, Any] | None) -> list[str]:
    comps = compare(results.read_records(run_dir, suite))
    if not comps:
        return []
    env = results.environment()
    recs = [
        results.make_record(
            suite, c["scenario"], c["params"], c["samples"], c["experiments"], env=env, lab=lab
        )
        for c in comps
    ]
    results.write_records(run_dir, suite, recs)
    return [c["scenario"] for c in comps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.latencycompare", description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--suite", default="suite_latency")
    parser.add_argument("--lab", help="JSON kept in the records' environment")
    args = parser.parse_args(argv)
    try:
        written = write(args.run_dir, args.suite, json.loads(args.lab) if args.lab else None)
    except (results.ResultsError, ValueError, OSError) as exc:
        print(f"latencycompare: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"changed": bool(written), "records": written}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
