"""Sockmap acceleration on the real kernel: redirection happens, toggling, uninstall.

Two pods as on the lab's node: a client and a server network namespace joined by a veth
pair, both processes inside the attached cgroup. The client talks to a ClusterIP that
connect4 rewrites to the server pod. With acceleration, the payload is handed from socket
to socket by sk_msg: the redirect counter and the sk_msg program's run count (kernel
run-time stats, what `kmesh-node top` reports) grow, and the veth carries only handshakes
and ACK-less teardown, not the payload. Without it, no sockops/sk_msg program is attached
and the payload crosses the veth. Round-trip latencies with and without are printed (run
with -s to see them) and attached to the JUnit report; they are not asserted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kmesh_node import accel, bpfobjects
from kmesh_node import libbpf as lb
from kmesh_node import structs as st
from kmesh_node.datapath import Datapath, uninstall
from kmesh_node.model import Endpoint, Frontend, LbPolicy, LbService
from tests.integration.kmnode_lab import (
    BPFFS_ROOT,
    CGROUP2_ROOT,
    _can_run,
    _remove_cgroup,
    _sh,
    stop_process,
)
from tests.integration.test_agent import manifest

pytestmark = pytest.mark.root

PINGPONG = Path(__file__).with_name("kmnode_pingpong.py")
CLIENT_IP, SERVER_IP = "10.244.200.1", "10.244.200.2"
CLIENT_IP6, SERVER_IP6, VIP6 = "fd00:244:200::1", "fd00:244:200::2", "fd00:96:200::1"
VIP, VIP_PORT, SERVER_PORT = "10.96.200.1", 80, 7000
ROUNDS, SIZE, CONNECTS = 2000, 64, 20


@dataclass
class Pair:
    """Client and server pods (netns) on one node, one cgroup, one pin directory."""

    name: str
    cgroup: Path
    bpffs: Path

    @property
    def client(self) -> str:
        return f"{self.name}-c"

    @property
    def server(self) -> str:
        return f"{self.name}-s"

    def wrap(self, netns: str, argv: list[str]) -> list[str]:
        """argv inside `netns` AND the cgroup (as a pod's process)."""
        procs = self.cgroup / "cgroup.procs"
        script = f'echo $$ > {procs} && exec ip netns exec {netns} "$@"'
        return ["sh", "-c", script, "kmacc", *argv]

    def veth_bytes(self) -> int:
        """Bytes the client's veth sent plus received."""
        out = subprocess.run(
            ["ip", "-n", self.client, "-j", "-s", "link", "show", "vc"],
            capture_output=True,
            text=True,
            check=True,
        )
        stats = json.loads(out.stdout)[0]["stats64"]
        return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


@contextlib.contextmanager
def make_pair() -> Iterator[Pair]:
    reason = _can_run()
    if reason:
        pytest.skip(reason)
    name = f"kmtest-{secrets.token_hex(4)}"
    pair = Pair(name, CGROUP2_ROOT / name, BPFFS_ROOT / name)
    try:
        _sh("ip", "netns", "add", pair.client)
        _sh("ip", "netns", "add", pair.server)
        for ns in (pair.client, pair.server):
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", pair.client, "link", "add", "vc", "type", "veth", "peer", "name", "vs")
        _sh("ip", "-n", pair.client, "link", "set", "vs", "netns", pair.server)
        for ns, dev, addr, addr6 in (
            (pair.client, "vc", CLIENT_IP, CLIENT_IP6),
            (pair.server, "vs", SERVER_IP, SERVER_IP6),
        ):
            _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _sh("ip", "-n", ns, "addr", "add", f"{addr6}/64", "dev", dev, "nodad")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
        pair.cgroup.mkdir()
        yield pair
    finally:
        if pair.bpffs.exists():
            uninstall(str(pair.bpffs))
        _remove_cgroup(pair.cgroup)
        for ns in (pair.client, pair.server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def pair() -> Iterator[Pair]:
    with make_pair() as p:
        yield p


@contextlib.contextmanager
def echo_server(pair: Pair, address: str = SERVER_IP) -> Iterator[None]:
    argv = [sys.executable, str(PINGPONG), "serve", address, str(SERVER_PORT)]
    proc = subprocess.Popen(pair.wrap(pair.server, argv), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready" once listening
        assert line.strip() == "ready", f"echo server did not start: {line!r}"
        yield
    finally:
        proc.kill()  # the PID we started (sh exec'd into ip exec'd into python)
        proc.wait(timeout=10)


def ping(pair: Pair, vip: str = VIP, server: str = SERVER_IP) -> dict[str, Any]:
    argv = [sys.executable, str(PINGPONG), "ping", vip, str(VIP_PORT)]
    argv += [str(ROUNDS), str(SIZE), str(CONNECTS)]
    res = subprocess.run(pair.wrap(pair.client, argv), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    want = f"[{server}]:{SERVER_PORT}" if ":" in server else f"{server}:{SERVER_PORT}"
    assert out["peer"] == want, out  # connect4/connect6 did their part
    assert out["intact"], "an echo came back different"
    return out


def service() -> LbService:
    eps = (Endpoint(SERVER_IP, SERVER_PORT),)
    return LbService("default/echo", LbPolicy.RANDOM, {Frontend(VIP, VIP_PORT): eps})


def sk_msg_runs(bpffs: Path) -> int:
    fd = bpfobjects.obj_get(str(bpffs / "prog_sk_msg"))
    try:
        return bpfobjects.prog_run_stats(fd)[1]
    finally:
        os.close(fd)


def attached(cgroup: Path, attach_type: int) -> list[int]:
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return lb.prog_query(fd, attach_type)
    finally:
        os.close(fd)


def wait_sockhash_empty(bpffs: Path, timeout: float = 5.0) -> int:
    fd = lb.obj_get(str(bpffs / accel.SOCKHASH))
    try:
        deadline = time.monotonic() + timeout
        while (n := len(accel.sockhash_keys(fd))) and time.monotonic() < deadline:
            time.sleep(0.05)
        return n
    finally:
        os.close(fd)


def report(record_property: Any, label: str, out: dict[str, Any], veth: int) -> None:
    rtt, conn = out["rtt"], out["connect_request"]
    line = (
        f"{label}: {ROUNDS} round trips of {SIZE} B: p50 {rtt['p50_us']:.1f} us, "
        f"p99 {rtt['p99_us']:.1f} us; {CONNECTS} new connections + 1 round trip: "
        f"p50 {conn['p50_us']:.1f} us; veth bytes {veth} for {out['payload_bytes']} B payload"
    )
    print(line)
    record_property(f"{label}_rtt_p50_us", round(rtt["p50_us"], 1))
    record_property(f"{label}_connect_p50_us", round(conn["p50_us"], 1))
    record_property(f"{label}_veth_bytes", veth)


def test_redirect_skips_the_veth_and_toggles_off(pair: Pair, record_property: Any) -> None:
    stats_fd = bpfobjects.enable_stats()  # run counts of sk_msg, as `kmesh-node top` shows
    try:
        with echo_server(pair):
            dp = Datapath.open(str(pair.bpffs), str(pair.cgroup), accelerate=True)
            try:
                dp.upsert(service())
                assert attached(pair.cgroup, lb.ATTACH_CGROUP_SOCK_OPS)
                before_ctr, before_runs = dp.counters(), sk_msg_runs(pair.bpffs)
                before_veth = pair.veth_bytes()
                fast = ping(pair)
                fast_veth = pair.veth_bytes() - before_veth
                after_ctr, after_runs = dp.counters(), sk_msg_runs(pair.bpffs)
            finally:
                dp.close()
            redirected = after_ctr["accel_redirect"] - before_ctr["accel_redirect"]
            # every request and every echo of the long connection went socket to socket
            assert redirected >= 2 * ROUNDS, (before_ctr, after_ctr)
            assert after_runs - before_runs >= 2 * ROUNDS
            # handshakes and teardowns only: far less than the payload itself
            assert fast_veth < fast["payload_bytes"] / 10, (fast_veth, fast["payload_bytes"])
            # closed sockets leave the sockhash (the server closes on the client's FIN)
            assert wait_sockhash_empty(pair.bpffs) == 0
            report(record_property, "accelerated", fast, fast_veth)

            # the same agent state without --accelerate: programs, links and map are gone
            dp = Datapath.open(str(pair.bpffs), str(pair.cgroup), accelerate=False)
            try:
                assert attached(pair.cgroup, lb.ATTACH_CGROUP_SOCK_OPS) == []
                pins = {p.name for p in pair.bpffs.iterdir()}
                assert pins.isdisjoint(accel.PINS), pins
                before_veth = pair.veth_bytes()
                slow = ping(pair)
                slow_veth = pair.veth_bytes() - before_veth
                assert dp.counters()["accel_redirect"] == after_ctr["accel_redirect"]
            finally:
                dp.close()
            assert slow_veth > slow["payload_bytes"], (slow_veth, slow["payload_bytes"])
            report(record_property, "plain", slow, slow_veth)
    finally:
        os.close(stats_fd)


HOLD = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
    "print(s.getsockname()[1], flush=True)\n"
    "sys.stdin.read()\n"
)


def test_sockhash_holds_both_ends_under_their_tuples(pair: Pair) -> None:
    """The keys the programs write are the ones structs.sock_key() builds: the client under
    (client, server pod) -- not the ClusterIP, connect4 rewrote it -- and the server under
    the swapped tuple, which is what sk_msg looks up (structs.peer_key)."""
    with echo_server(pair), Datapath.open(str(pair.bpffs), str(pair.cgroup), accelerate=True) as dp:
        dp.upsert(service())
        argv = pair.wrap(pair.client, [sys.executable, "-c", HOLD, VIP, str(VIP_PORT)])
        holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdin is not None
            port = int(holder.stdout.readline())
            client = st.sock_key((CLIENT_IP, port), (SERVER_IP, SERVER_PORT))
            fd = lb.obj_get(str(pair.bpffs / accel.SOCKHASH))
            try:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    keys = {bytes(k) for k in accel.sockhash_keys(fd)}
                    if len(keys) >= 2:
                        break
                    time.sleep(0.05)
            finally:
                os.close(fd)
            assert keys == {bytes(client), bytes(st.peer_key(client))}, [
                st.decode_sock_key(st.SockKey.from_buffer_copy(k)) for k in keys
            ]
            holder.stdin.close()
            assert holder.wait(timeout=10) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        assert wait_sockhash_empty(pair.bpffs) == 0


def test_ipv6_pods_are_redirected_too(pair: Pair) -> None:
    """An IPv6 ClusterIP (connect6) to an IPv6 pod: the same redirect, the payload off the
    veth."""
    eps = (Endpoint(SERVER_IP6, SERVER_PORT),)
    svc6 = LbService("default/echo6", LbPolicy.RANDOM, {Frontend(VIP6, VIP_PORT): eps})
    with (
        echo_server(pair, SERVER_IP6),
        Datapath.open(str(pair.bpffs), str(pair.cgroup), accelerate=True) as dp,
    ):
        dp.upsert(svc6)
        before, before_veth = dp.counters()["accel_redirect"], pair.veth_bytes()
        out = ping(pair, VIP6, SERVER_IP6)
        veth = pair.veth_bytes() - before_veth
        assert dp.counters()["accel_redirect"] - before >= 2 * ROUNDS
        assert veth < out["payload_bytes"] / 10, (veth, out["payload_bytes"])


def test_dual_stack_listener_finds_its_ipv4_client(pair: Pair) -> None:
    """A server listening on [::] holds IPv4 clients as IPv4-mapped IPv6 sockets; the key
    folds both to the IPv4 form, so the redirect still finds the peer."""
    with (
        echo_server(pair, "::"),
        Datapath.open(str(pair.bpffs), str(pair.cgroup), accelerate=True) as dp,
    ):
        dp.upsert(service())
        before, before_veth = dp.counters()["accel_redirect"], pair.veth_bytes()
        out = ping(pair)
        veth = pair.veth_bytes() - before_veth
        assert dp.counters()["accel_redirect"] - before >= 2 * ROUNDS
        assert veth < out["payload_bytes"] / 10, (veth, out["payload_bytes"])


BLOB_BYTES = 3_000_000


def test_bulk_sendfile_arrives_intact(pair: Pair) -> None:
    """Megabytes sent with sendfile() (the splice path) through the redirect: every byte
    arrives, in order, with back-pressure from a reader slower than the sender."""
    argv = [sys.executable, str(PINGPONG), "blob", SERVER_IP, str(SERVER_PORT), str(BLOB_BYTES)]
    proc = subprocess.Popen(pair.wrap(pair.server, argv), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        want = proc.stdout.readline().strip()
        with Datapath.open(str(pair.bpffs), str(pair.cgroup), accelerate=True) as dp:
            dp.upsert(service())
            before = dp.counters()["accel_redirect"]
            for _ in range(3):
                fetch = [sys.executable, str(PINGPONG), "fetch", VIP, str(VIP_PORT)]
                res = subprocess.run(
                    pair.wrap(pair.client, fetch), capture_output=True, text=True, timeout=60
                )
                assert res.returncode == 0, res.stderr[-2000:]
                assert json.loads(res.stdout) == {"bytes": BLOB_BYTES, "sha256": want}
            assert dp.counters()["accel_redirect"] > before  # it did go socket to socket
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_peer_outside_the_map_passes(pair: Pair) -> None:
    """A server outside the cgroup is not in the sockhash: its client's messages must take
    the normal path (SK_PASS), not be dropped by the failed redirect."""
    argv = ["ip", "netns", "exec", pair.server, sys.executable, str(PINGPONG)]
    proc = subprocess.Popen([*argv, "serve", SERVER_IP, str(SERVER_PORT)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        with Datapath.open(str(pair.bpffs), str(pair.cgroup), accelerate=True) as dp:
            dp.upsert(service())
            before = dp.counters()
            out = ping(pair)
            after = dp.counters()
        assert out["rtt"]["count"] == ROUNDS
        assert after["accel_redirect"] == before["accel_redirect"]
        assert after["accel_pass"] - before["accel_pass"] >= ROUNDS
    finally:
        proc.kill()
        proc.wait(timeout=10)


class AgentProc:
    """`kmesh-node run` outside the cgroup, like a node agent."""

    def __init__(self, pair: Pair, manifests: Path, log: Path, *extra: str) -> None:
        self.pair = pair
        self.log_path = log
        self._log = log.open("w")
        argv = [sys.executable, "-m", "kmesh_node", "run", "--source", f"manifests:{manifests}"]
        argv += ["--cgroup", str(pair.cgroup), "--bpffs", str(pair.bpffs)]
        argv += ["--metrics", "127.0.0.1:0", *extra]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, accelerated: bool, timeout: float = 60) -> dict[str, Any]:
        """Until the service is served and the acceleration links are as asked."""
        deadline = time.monotonic() + timeout
        info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited: {self.log_path.read_text()[-3000:]}")
            if "running:" in self.log_path.read_text():
                info = json.loads(kmesh_node(self.pair.bpffs, "status", "--json").stdout)
                if info.get("frontends") == 1 and info["accel"]["enabled"] == accelerated:
                    return info
            time.sleep(0.2)
        raise AssertionError(f"agent not ready: {info} {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


def kmesh_node(bpffs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kmesh_node", *args, "--bpffs", str(bpffs)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_agent_flag_status_top_restart_and_uninstall(pair: Pair, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "echo.yaml").write_text(
        manifest("echo", VIP, [SERVER_IP], port=VIP_PORT).replace("8080", str(SERVER_PORT))
    )
    started: list[AgentProc] = []

    def start(*extra: str) -> AgentProc:
        agent = AgentProc(pair, manifests, tmp_path / f"agent{len(started)}.log", *extra)
        started.append(agent)
        return agent

    try:
        with echo_server(pair):
            agent = start("--accelerate")
            first = agent.wait_ready(accelerated=True)
            text = kmesh_node(pair.bpffs, "status").stdout
            assert "acceleration on" in text and "hook sockops" in text, text
            ping(pair)
            top = json.loads(kmesh_node(pair.bpffs, "top", "--json").stdout)
            names = {p["name"] for p in top["programs"]}
            assert {"kmn_sockops", "kmn_sk_msg"} <= names, names
            agent.stop()

            # restart with --accelerate: the same links get the new programs (adopted)
            agent = start("--accelerate")
            again = agent.wait_ready(accelerated=True)
            for hook in accel.HOOKS:
                old, new = first["accel"]["links"][hook], again["accel"]["links"][hook]
                assert new["link_id"] == old["link_id"] and new["prog_id"] != old["prog_id"]
            agent.stop()

            # restart without: acceleration detached and unpinned, balancing goes on
            agent = start()
            off = agent.wait_ready(accelerated=False)
            assert off["accel"] == {"enabled": False, "links": {}}
            assert attached(pair.cgroup, lb.ATTACH_CGROUP_SOCK_OPS) == []
            assert "acceleration off" in kmesh_node(pair.bpffs, "status").stdout
            ping(pair)
            agent.stop()

            agent = start("--accelerate")
            on = agent.wait_ready(accelerated=True)
            agent.stop()
        prog_ids = [link["prog_id"] for link in on["accel"]["links"].values()]
        res = kmesh_node(pair.bpffs, "uninstall")
        assert res.returncode == 0, res.stderr
        assert not pair.bpffs.exists()
        assert attached(pair.cgroup, lb.ATTACH_CGROUP_SOCK_OPS) == []
        deadline = time.monotonic() + 10  # programs are freed after an RCU grace period
        while prog_ids and time.monotonic() < deadline:
            prog_ids = [pid for pid in prog_ids if _prog_exists(pid)]
            time.sleep(0.1)
        assert prog_ids == [], "acceleration programs still loaded after uninstall"
    finally:
        for agent in started:
            agent.stop()


def _prog_exists(prog_id: int) -> bool:
    try:
        os.close(bpfobjects.fd_by_id("prog", prog_id))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True
