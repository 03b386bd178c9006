"""The eBPF datapath on the real kernel: rewrites, selection, delete, UDP, IPv6, resize."""

from __future__ import annotations

import collections
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmesh_node.datapath import Datapath
from kmesh_node.model import Endpoint, Frontend, L4Proto, LbPolicy, LbService
from tests.integration.kmnode_lab import PROBE, Lab, make_lab

pytestmark = pytest.mark.root

PORT = 8080


@pytest.fixture
def lab() -> Iterator[Lab]:
    with make_lab() as lab:
        yield lab


@pytest.fixture
def dp(lab: Lab) -> Iterator[Datapath]:
    datapath = Datapath.open(str(lab.bpffs), str(lab.cgroup))
    try:
        yield datapath
    finally:
        datapath.close()


def vip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def service(
    i: int,
    n_eps: int = 3,
    policy: LbPolicy = LbPolicy.RANDOM,
    proto: L4Proto = L4Proto.TCP,
    port: int = 80,
) -> LbService:
    eps = tuple(
        Endpoint(f"10.244.{(i * 7 + j) % 250}.{(i + j) % 250 + 1}", PORT) for j in range(n_eps)
    )
    return LbService(f"ns/svc{i}", policy, {Frontend(vip(i), port, proto): eps})


def probe_tcp(lab: Lab, targets: list[tuple[str, int]]) -> list[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(targets, f)
        f.flush()
        return lab.probe("tcp", str(PORT), f.name)["peers"]


def expected_peers(svc: LbService) -> set[str]:
    ((_fe, eps),) = svc.frontends.items()
    return {f"{e.address}:{e.port}" for e in eps}


def test_one_service_reaches_its_endpoints(lab: Lab, dp: Datapath) -> None:
    svc = service(0)
    dp.upsert(svc)
    peers = probe_tcp(lab, [(vip(0), 80)] * 30)
    assert set(peers) <= expected_peers(svc), peers
    st = dp.state()
    assert st["services"] == 1 and st["frontends"] == 1 and st["endpoints"] == 3


@pytest.mark.parametrize("count", [1_000, 10_000])
def test_many_services_each_reach_their_endpoints(lab: Lab, dp: Datapath, count: int) -> None:
    services = {s.key: s for s in (service(i) for i in range(count))}
    dp.apply(services)
    assert dp.state()["frontends"] == count
    sample = sorted(random.Random(count).sample(range(count), 200))
    peers = probe_tcp(lab, [(vip(i), 80) for i in sample])
    for i, peer in zip(sample, peers, strict=True):
        assert peer in expected_peers(services[f"ns/svc{i}"]), (i, peer)


def test_random_spreads_over_endpoints(lab: Lab, dp: Datapath) -> None:
    svc = service(1, n_eps=4)
    dp.upsert(svc)
    peers = probe_tcp(lab, [(vip(1), 80)] * 400)
    counts = collections.Counter(peers)
    assert set(counts) == expected_peers(svc)
    # 400 draws over 4: each expected 100; 50..150 holds with overwhelming probability
    assert all(50 <= c <= 150 for c in counts.values()), counts


def test_round_robin_cycles(lab: Lab, dp: Datapath) -> None:
    svc = service(2, n_eps=7, policy=LbPolicy.ROUND_ROBIN)  # 7 > inline: overflow path too
    dp.upsert(svc)
    peers = probe_tcp(lab, [(vip(2), 80)] * 70)
    order = [f"{e.address}:{e.port}" for e in next(iter(svc.frontends.values()))]
    start = order.index(peers[0])
    assert peers == [order[(start + k) % 7] for k in range(70)]


def test_deleted_service_is_no_longer_rewritten(lab: Lab, dp: Datapath) -> None:
    dp.upsert(service(3))
    dp.upsert(service(4))
    dp.delete("ns/svc3")
    peers = probe_tcp(lab, [(vip(3), 80), (vip(4), 80)])
    # 10.96.0.4 is no address in the namespace: without a rewrite there is no route
    assert peers[0].startswith("error:"), peers
    assert peers[1] in expected_peers(service(4))
    assert dp.state()["services"] == 1


def test_no_endpoint_is_left_untouched_and_counted(lab: Lab, dp: Datapath) -> None:
    dp.upsert(LbService("ns/empty", LbPolicy.RANDOM, {Frontend(vip(5), 80): ()}))
    peers = probe_tcp(lab, [(vip(5), 80)] * 3)
    assert all(p.startswith("error:") for p in peers), peers
    assert dp.counters()["no_endpoint"] == 3


def test_udp_sendmsg_recvmsg_and_connected_udp(lab: Lab, dp: Datapath) -> None:
    eps = (Endpoint("10.244.9.1", 5353), Endpoint("10.244.9.2", 5353))
    dp.upsert(LbService("ns/dns", LbPolicy.RANDOM, {Frontend(vip(6), 53, L4Proto.UDP): eps}))
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([(vip(6), 53)] * 10, f)
        f.flush()
        listen = json.dumps([[e.address, e.port] for e in eps])
        replies = lab.probe("udp", listen, f.name)["replies"]
    names = {f"{e.address}:{e.port}" for e in eps}
    for r in replies:
        assert r.get("answered_by") in names, r
        assert r["reply_from"] == f"{vip(6)}:53", r  # recvmsg4 restored the service address
        assert r.get("connected_answered_by") in names, r


def test_udp6_sendmsg6_recvmsg6(lab: Lab, dp: Datapath) -> None:
    eps = (Endpoint("fd00:244::9:1", 5353), Endpoint("fd00:244::9:2", 5353))
    fe = Frontend("fd00:96::53", 53, L4Proto.UDP)
    dp.upsert(LbService("ns/dns6", LbPolicy.RANDOM, {fe: eps}))
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([(fe.address, 53)] * 10, f)
        f.flush()
        listen = json.dumps([[e.address, e.port] for e in eps])
        replies = lab.probe("udp", listen, f.name)["replies"]
    names = {f"[{e.address}]:{e.port}" for e in eps}
    for r in replies:
        assert r.get("answered_by") in names, r
        assert r["reply_from"] == f"[{fe.address}]:53", r  # recvmsg6 restored it
        assert r.get("connected_answered_by") in names, r


def test_ipv6_connect6(lab: Lab, dp: Datapath) -> None:
    eps = tuple(Endpoint(f"fd00:244::{k}", PORT) for k in range(1, 6))  # 5 > inline6
    dp.upsert(LbService("ns/v6", LbPolicy.ROUND_ROBIN, {Frontend("fd00:96::10", 80): eps}))
    peers = probe_tcp(lab, [("fd00:96::10", 80)] * 10)
    want = [f"[{e.address}]:{e.port}" for e in eps]
    start = want.index(peers[0])
    assert peers == [want[(start + k) % 5] for k in range(10)]


def test_resize_under_lookups_loses_nothing(lab: Lab, dp: Datapath) -> None:
    hot = service(7, n_eps=8)  # overflow endpoints: both maps resize under it
    dp.upsert(hot)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([(vip(7), 80)] * 3_000, f)
        f.flush()
        client = subprocess.Popen(
            lab.wrap([sys.executable, str(PROBE), "tcp", str(PORT), f.name]),
            stdout=subprocess.PIPE,
            text=True,
        )
        before = dp.state()["resizes"]
        cycles = 0
        try:
            # grow through several capacities and shrink back, until the client is done
            while client.poll() is None and cycles < 200:
                for n in (200, 1_500, 100, 0):
                    batch = {s.key: s for s in (service(1000 + i, 6) for i in range(n))}
                    dp.apply({hot.key: hot} | batch)
                cycles += 1
            out, _ = client.communicate(timeout=120)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    resizes = dp.state()["resizes"] - before
    assert resizes >= 4, (cycles, resizes)
    peers = json.loads(out)["peers"]
    assert len(peers) == 3_000
    assert set(peers) <= expected_peers(hot), collections.Counter(peers)


def test_refused_service_changes_nothing(lab: Lab, dp: Datapath) -> None:
    good = service(8)
    dp.upsert(good)
    bad = LbService(good.key, LbPolicy.RANDOM, {Frontend(vip(8), 80): (Endpoint("fd00::1", 80),)})
    with pytest.raises(ValueError, match="IPv4"):
        dp.upsert(bad)
    assert set(probe_tcp(lab, [(vip(8), 80)] * 5)) <= expected_peers(good)


def test_stress_loops_knob_compiles_a_bounded_loop(lab: Lab) -> None:
    with pytest.raises(RuntimeError, match="stress-loops"):
        Datapath.open(str(lab.bpffs), str(lab.cgroup), stress_loops=-1)
    with Datapath.open(str(lab.bpffs), str(lab.cgroup), stress_loops=65_535) as dp:
        svc = service(9)
        dp.upsert(svc)
        assert set(probe_tcp(lab, [(vip(9), 80)] * 5)) <= expected_peers(svc)


def test_one_million_endpoints(lab: Lab, dp: Datapath) -> None:
    services = {}
    for i in range(1_000):
        eps = tuple(Endpoint(f"10.244.{j // 250}.{j % 250 + 1}", PORT) for j in range(1_000))
        services[f"ns/big{i}"] = LbService(
            f"ns/big{i}", LbPolicy.ROUND_ROBIN, {Frontend(vip(i), 80): eps}
        )
    dp.apply(services)
    state = dp.state()
    assert state["endpoints"] == 1_000_000
    assert state["entries_ep4"] == 1_000 * (1_000 - 5)  # all but the inline ones
    # round robin over 1,000 endpoints: 20 consecutive connects to one VIP are 20 distinct
    # endpoints (mostly in the overflow map); a sample of VIPs answers from its own set
    peers = probe_tcp(lab, [(vip(123), 80)] * 20 + [(vip(i), 80) for i in range(0, 1_000, 50)])
    assert len(set(peers[:20])) == 20 and not any(p.startswith("error") for p in peers), peers


def test_only_processes_inside_the_cgroup_are_rewritten(lab: Lab, dp: Datapath) -> None:
    svc = service(10)
    dp.upsert(svc)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([(vip(10), 80)] * 3, f)
        f.flush()
        outside = subprocess.run(
            lab.ns([sys.executable, str(PROBE), "tcp", str(PORT), f.name]),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert outside.returncode == 0, outside.stderr
    assert all(p.startswith("error:") for p in json.loads(outside.stdout)["peers"])
    assert set(probe_tcp(lab, [(vip(10), 80)] * 3)) <= expected_peers(svc)


def test_open_refuses_a_cgroup_that_is_not_cgroup2(lab: Lab, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cgroup2"):
        Datapath.open(str(lab.bpffs), str(tmp_path))
    with pytest.raises(RuntimeError, match="mkdir"):
        Datapath.open(str(lab.bpffs), str(tmp_path / "missing"))


def test_one_writer_per_pin_directory(
    lab: Lab, dp: Datapath, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kmesh_node import datapath

    monkeypatch.setattr(datapath, "LOCK_WAIT_S", 0.3)
    with pytest.raises(RuntimeError, match="another kmesh-node process is using"):
        Datapath.open(str(lab.bpffs), str(lab.cgroup))
    with pytest.raises(RuntimeError, match="stop it first"):
        datapath.uninstall(str(lab.bpffs))
    svc = service(11)
    dp.upsert(svc)  # the holder is unaffected
    assert set(probe_tcp(lab, [(vip(11), 80)] * 3)) <= expected_peers(svc)
