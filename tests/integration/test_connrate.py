"""tools/connrate.c built by kmesh_lab.connrate and run inside a network namespace this test
creates, against a listener on that namespace's loopback.

The namespace keeps the kernel's TCP counters to ourselves: what the generator reports is
checked against the connections the kernel saw open on both sides.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kmesh_lab import connrate

pytestmark = pytest.mark.root

PORT = 8080  # free by construction: the namespace is new
LISTENER = """
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(4096)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    conn.close()
"""


def _in_ns(ns: str, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], text=True, **kw)


def _tcp_counters(ns: str) -> dict[str, int]:
    text = _in_ns(ns, ["cat", "/proc/net/snmp"], capture_output=True, check=True).stdout
    head, values = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    return {k: int(v) for k, v in zip(head[1:], values[1:], strict=True)}


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return connrate.build(tmp_path_factory.mktemp("connrate"))


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"kmtest-cr-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        _in_ns(name, ["ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def listener(ns: str) -> Iterator[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, str(PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield ns
    finally:
        proc.terminate()  # the Popen we started, by its PID
        proc.wait(timeout=10)


def test_rebuilt_only_when_the_source_is_newer(binary: Path) -> None:
    built = binary.stat().st_mtime_ns
    assert connrate.build(binary.parent) == binary
    assert binary.stat().st_mtime_ns == built


def test_counts_what_the_kernel_saw(binary: Path, listener: str) -> None:
    before = _tcp_counters(listener)
    proc = _in_ns(
        listener,
        connrate.argv(binary, f"127.0.0.1:{PORT}", 1, 2, 2000),
        capture_output=True,
        timeout=30,
    )
    after = _tcp_counters(listener)
    assert proc.returncode == 0, proc.stderr
    out = connrate.parse(proc.stdout)
    assert out["workers"] == 2 and out["errors"] == 0 and out["errors_by_errno"] == {}
    assert out["connections"] > 100
    assert 1.0 <= out["duration_s"] < 3.0
    assert out["connections_per_s"] == pytest.approx(out["connections"] / out["duration_s"])
    # every connect() is one active open; the listener's side counts a passive open when the
    # handshake's last ACK arrives, which a full accept queue drops (the client's connect()
    # has returned by then): nearly all, never more
    assert after["ActiveOpens"] - before["ActiveOpens"] == out["connections"]
    passive = after["PassiveOpens"] - before["PassiveOpens"]
    assert 0.99 * out["connections"] <= passive <= out["connections"]
    # SO_LINGER 0: the generator's close is a RST, so it leaves no TIME_WAIT behind
    assert after["OutRsts"] - before["OutRsts"] >= out["connections"]


def test_a_refused_port_is_counted_by_errno_and_exits_1(binary: Path, ns: str) -> None:
    proc = _in_ns(ns, [str(binary), "-t", "1", "127.0.0.1:9"], capture_output=True, timeout=30)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["connections"] == 0 and out["errors"] == out["errors_by_errno"]["ECONNREFUSED"] > 0


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["127.0.0.1:80"], "-t must be 1..3600"),
        (["-t", "5000", "127.0.0.1:80"], "-t must be 1..3600"),
        (["-t", "1", "-c", "0", "127.0.0.1:80"], "-c must be 1..256"),
        (["-t", "1", "localhost:80"], "IPv4 address"),
        (["-t", "1", "127.0.0.1"], "IP:PORT"),
        (["-t", "1", "-x", "127.0.0.1:80"], "unknown"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(binary: Path, args: list[str], why: str) -> None:
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2 and why in proc.stderr and proc.stdout == ""
