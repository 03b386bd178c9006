"""Pure parts of the bench (no root): address plans, manifests, percentiles, verdicts."""

from __future__ import annotations

import ipaddress

import yaml

from kmesh_node import bench
from kmesh_node.bench_worker import percentiles


def test_address_plan_is_disjoint_and_in_range() -> None:
    n = 100_000
    vips = {bench.vip(i) for i in (0, 1, n - 1)}
    assert len(vips) == 3
    vip_net = ipaddress.ip_network("10.96.0.0/12")
    ep_net = ipaddress.ip_network(bench.EP_ROUTE)
    assert all(ipaddress.ip_address(v) in vip_net for v in vips)
    last = bench.endpoint_ip(n - 1, bench.ENDPOINTS_PER_SERVICE - 1)
    assert ipaddress.ip_address(last) in ep_net
    assert bench.endpoint_ip(0, 2) != bench.endpoint_ip(1, 0)
    # change IPs used by the agent bench stay outside the endpoints in use
    assert ipaddress.ip_address(bench.ip4(bench.EP_BASE + 0x400000)) > ipaddress.ip_address(last)


def test_spread_indices() -> None:
    assert bench.spread_indices(10) == list(range(10))
    idx = bench.spread_indices(10_000)
    assert len(idx) == len(set(idx)) == 200
    assert idx[0] == 0 and idx[-1] < 10_000 and idx[1] == 50


def test_manifest_is_a_valid_service_and_slice() -> None:
    docs = list(yaml.safe_load_all(bench.manifest(7, ["10.192.0.1", bench.endpoint_ip(7, 1)])))
    svc, sl = docs
    assert svc["kind"] == "Service" and svc["spec"]["clusterIP"] == bench.vip(7)
    assert sl["kind"] == "EndpointSlice"
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "svc-7"
    addrs = [e["addresses"][0] for e in sl["endpoints"]]
    assert addrs[0] == "10.192.0.1" and addrs[1] == bench.endpoint_ip(7, 1)


def test_manifest_translates_like_the_datapath_service() -> None:
    from kmesh_node.translate import parse_object, translate

    docs = list(yaml.safe_load_all(bench.manifest(3)))
    svc_spec, slice_spec = (parse_object(d) for d in docs)
    got = translate(svc_spec, [slice_spec], bench.service(3).policy)
    assert got == bench.service(3)


def test_percentiles_nearest_rank() -> None:
    p = percentiles([float(x) for x in range(1, 101)])
    assert p["p50"] == 50 and p["p90"] == 90 and p["p99"] == 99
    assert p["min"] == 1 and p["max"] == 100 and p["count"] == 100
    assert percentiles([]) == {"count": 0}
    assert percentiles([5.0])["p99"] == 5.0


def test_verdict() -> None:
    assert bench.verdict("connect_ns_hot", 200.0, True)["met"] is True
    assert bench.verdict("connect_ns_hot", 300.0, True)["met"] is False
    assert bench.verdict("connect_ns_spread", 300.0, False)["met"] is None  # other size
    assert bench.verdict("memory_1", None, True)["met"] is None


def test_summary_rows() -> None:
    result = {
        "datapath": {
            "connect_ns": [
                {"pattern": "hot", "services": 10, "ns_per_run": 200.0, "met": True},
                {"pattern": "spread", "services": 10, "ns_per_run": 300.0, "met": None},
            ],
            "memory": [{"services": 1, "mib": 0.1, "met": True}, {"services": 100, "mib": 0.2}],
            "connect_latency": {"services": 10, "ratio_p50": 1.0, "met": None},
        },
        "agent": {"skipped": "no agent"},
    }
    rows = bench.summary(result)
    assert [r["name"] for r in rows] == [
        "connect_ns_hot",
        "connect_ns_spread",
        "memory_1",
        "vip_vs_direct",
    ]
    assert rows[2]["target"] == 0.25
