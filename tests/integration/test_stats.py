"""`kmesh-node top` on the real kernel: a small bcc program and a map-in-map, pinned in a
kmtest-* bpffs dir this test creates and removes, driven by loopback UDP datagrams."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kmesh_node import bpfobjects, stats

pytestmark = pytest.mark.root

SO_ATTACH_BPF = 50

PROGRAM = r"""
BPF_HASH(counts, u32, u64, 1024);
BPF_ARRAY(inner_a, u64, 512);
BPF_ARRAY(inner_b, u64, 512);
BPF_HASH(inner_h, u32, u64, 4096);
BPF_ARRAY_OF_MAPS(outer, "inner_a", 16);
BPF_HASH_OF_MAPS(houter, u32, "inner_h", 8);

int kmtest_filter(struct __sk_buff *skb) {
    u32 k = skb->len;
    u64 zero = 0, *v = counts.lookup_or_try_init(&k, &zero);
    if (v)
        __sync_fetch_and_add(v, 1);
    int idx = 0;
    void *inner = outer.lookup(&idx);
    if (inner) {
        u64 *c = bpf_map_lookup_elem(inner, &idx);
        if (c)
            __sync_fetch_and_add(c, 1);
    }
    u32 hk = 7;
    void *hinner = houter.lookup(&hk);
    if (hinner) {
        u64 *c = bpf_map_lookup_elem(hinner, &hk);
        if (c)
            __sync_fetch_and_add(c, 1);
    }
    return -1;
}
"""


@dataclass
class Pinned:
    dir: str
    prog_fd: int
    inner_ids: list[int]
    inner_bytes: int
    hash_entries: int

    def drive(self, packets: int) -> None:
        """Send `packets` datagrams over loopback through a socket running the filter."""
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rx.bind(("127.0.0.1", 0))
            rx.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, self.prog_fd)
            for i in range(packets):
                tx.sendto(b"x" * (1 + i % 5), rx.getsockname())
        finally:
            rx.close()
            tx.close()


def _rmtree_bpffs(path: str) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for f in files:
            os.unlink(os.path.join(root, f))
        for d in dirs:
            os.rmdir(os.path.join(root, d))
    os.rmdir(path)


@pytest.fixture
def pinned() -> Iterator[Pinned]:
    bcc = pytest.importorskip("bcc")
    pin_dir = f"/sys/fs/bpf/kmtest-{secrets.token_hex(4)}"
    b = bcc.BPF(text=PROGRAM)
    try:
        fn = b.load_func("kmtest_filter", bcc.BPF.SOCKET_FILTER)
        outer = b["outer"]
        outer[ctypes.c_int(0)] = ctypes.c_int(b["inner_a"].get_fd())
        outer[ctypes.c_int(5)] = ctypes.c_int(b["inner_b"].get_fd())
        h = b["inner_h"]
        for i in range(300):
            h[ctypes.c_uint32(i)] = ctypes.c_uint64(i)
        b["houter"][ctypes.c_uint32(7)] = ctypes.c_int(h.get_fd())
        os.makedirs(pin_dir + "/maps")
        pins = {
            "prog": fn.fd,
            "maps/outer": outer.get_fd(),
            "maps/counts": b["counts"].get_fd(),
            "maps/houter": b["houter"].get_fd(),
        }
        for name, fd in pins.items():
            if bcc.libbcc.lib.bpf_obj_pin(fd, f"{pin_dir}/{name}".encode()) != 0:
                raise RuntimeError(f"cannot pin {name} in {pin_dir}")
        inner_ids, inner_bytes = [], 0
        for name in ("inner_a", "inner_b", "inner_h"):
            info = bpfobjects.read_fdinfo(b[name].get_fd())
            inner_ids.append(int(info["map_id"]))
            inner_bytes += int(info["memlock"])
        yield Pinned(pin_dir, fn.fd, inner_ids, inner_bytes, 300)
    finally:
        if os.path.isdir(pin_dir):
            _rmtree_bpffs(pin_dir)
        b.cleanup()


def _collect_while_driving(
    p: Pinned, interval: float, packets: int, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """collect() with the traffic sent inside its window (deterministic even on a busy
    host): the window's sleep first drives the datagrams, then sleeps."""
    real_sleep = time.sleep

    def drive_then_sleep(seconds: float) -> None:
        p.drive(packets)
        real_sleep(seconds)

    monkeypatch.setattr(stats.time, "sleep", drive_then_sleep)
    try:
        return stats.collect(p.dir, interval)
    finally:
        monkeypatch.undo()


def test_collect_sees_programs_inner_maps_and_run_stats(
    pinned: Pinned, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = _collect_while_driving(pinned, 0.5, 2000, monkeypatch)
    json.dumps(report)  # JSON-able
    (prog,) = report["programs"]
    assert prog["name"] == "kmtest_filter"
    assert prog["type"] == "socket_filter"
    assert prog["delta_run_cnt"] >= 2000  # every datagram ran the filter once
    assert prog["delta_run_time_ns"] > 0
    assert 1 < prog["ns_per_run"] < 100_000
    assert 0 < prog["cpu_pct_core"] < 100
    assert prog["cpu_pct_node"] == pytest.approx(prog["cpu_pct_core"] / report["ncpu"])

    maps = {m["name"]: m for m in report["maps"]}
    assert maps["outer"]["type"] == "array_of_maps"
    assert maps["outer"]["entries"] == 2  # slots 0 and 5 are filled
    assert maps["houter"]["type"] == "hash_of_maps"
    assert maps["houter"]["entries"] == 1
    assert sorted(maps["outer"]["inner_map_ids"] + maps["houter"]["inner_map_ids"]) == sorted(
        pinned.inner_ids
    )
    for name in ("inner_a", "inner_b"):
        assert maps[name]["inner_of"] == maps["outer"]["id"]
    assert maps["inner_h"]["inner_of"] == maps["houter"]["id"]
    assert maps["inner_a"]["entries"] == 512  # preallocated array: every slot exists
    assert maps["inner_h"]["entries"] == pinned.hash_entries
    assert 1 <= maps["counts"]["entries"] <= 5  # datagram lengths 1..5 (+28 header bytes)

    totals = report["totals"]
    assert totals["inner_maps"] == 3
    assert totals["inner_maps_bytes"] == pinned.inner_bytes
    assert totals["maps_bytes"] == sum(m["memlock_bytes"] for m in report["maps"])

    # the gadget's view: the program references counts and the two outer maps, not inner ones
    g = report["gadget_view"]
    (gp,) = g["programs"]
    assert gp["map_count"] == 3
    assert gp["map_bytes"] == sum(maps[n]["memlock_bytes"] for n in ("outer", "houter", "counts"))
    assert g["invisible_inner_map_bytes"] == pinned.inner_bytes
    assert g["truth_bytes"] - g["distinct_referenced_bytes"] >= pinned.inner_bytes


def test_snapshot_counts_without_window(pinned: Pinned) -> None:
    pinned.drive(10)
    snap = stats.snapshot(pinned.dir)
    assert {m["name"] for m in snap["maps"]} >= {"outer", "counts", "inner_a", "inner_h"}
    assert snap["totals"]["inner_maps"] == 3


def _stats_fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-stats":
                out.append(fd)
    return out


def test_stats_switched_off_after_window(pinned: Pinned) -> None:
    # other engineers' tools may switch stats on meanwhile, so do not read the global
    # sysctl: check that our own BPF_ENABLE_STATS fd lives exactly as long as the window
    assert not _stats_fds()
    with stats.stats_enabled() as how:
        if how == "fd":
            assert len(_stats_fds()) == 1
    assert not _stats_fds()
    report = stats.collect(pinned.dir, 0.1)
    assert report["stats_method"] in ("fd", "already_on", "sysctl")
    assert not _stats_fds()


def test_top_cli_json(pinned: Pinned) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kmesh_node",
            "top",
            "--json",
            "--bpffs",
            pinned.dir,
            "--interval",
            "0.2",
            "--count",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(reports) == 2
    assert all(r["totals"]["inner_maps"] == 3 for r in reports)


def test_top_cli_human(pinned: Pinned) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kmesh_node", "top", "--bpffs", pinned.dir, "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "kmtest_filter" in out.stdout
    assert "2 inner map(s)" in out.stdout  # folded under outer (and 1 under houter)
    assert "1 inner map(s)" in out.stdout
    assert "invisible to it" in out.stdout


def test_missing_bpffs_dir_says_how_to_fix(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="--bpffs"):
        stats.collect(str(tmp_path / "nope"), 0.1)


def test_metrics_scrape_reads_the_kernel(pinned: Pinned) -> None:
    import urllib.request

    from kmesh_node import metrics

    m = metrics.Metrics(pinned.dir, lambda: {"services": 1})
    m.start("127.0.0.1:0")
    try:
        with stats.stats_enabled():
            pinned.drive(50)
        assert m.address is not None
        url = f"http://127.0.0.1:{m.address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
    finally:
        m.stop()
    assert 'kmesh_node_map_entries{map="maps/outer"} 2.0' in body
    assert 'kmesh_node_program_runs_total{program="prog"}' in body
    runs = next(
        line
        for line in body.splitlines()
        if line.startswith('kmesh_node_program_runs_total{program="prog"}')
    )
    assert float(runs.split()[-1]) >= 50
    inner = [x for x in body.splitlines() if x.startswith('kmesh_node_map_bytes{map="inner_')]
    assert len(inner) == 3  # inner maps are visible to metrics too
