"""Fixtures for the kmesh_node datapath/agent integration tests.

Every test gets its own `kmtest-<random>` network namespace, cgroup2 directory and bpffs
pin directory, removed in `finally` blocks. Endpoints live inside the namespace: the whole
10.244.0.0/16 and fd00:244::/64 ranges are local there (AnyIP routes on lo), so one
listener on 0.0.0.0 answers for every endpoint address. Clients run inside the namespace
AND the cgroup (probe.py), so only they are rewritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CGROUP2_ROOT = Path("/sys/fs/cgroup/unified")
BPFFS_ROOT = Path("/sys/fs/bpf")
PROBE = Path(__file__).with_name("kmnode_probe.py")
REPO = Path(__file__).resolve().parents[2]


def _can_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not CGROUP2_ROOT.is_dir():
        return f"no cgroup2 mount at {CGROUP2_ROOT}"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc (python3-bpfcc) is not importable"
    return None


@dataclass
class Lab:
    name: str
    netns: str
    cgroup: Path
    bpffs: Path

    def run_in(self, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        """Run argv inside the namespace AND the cgroup (the only rewritten processes)."""
        return subprocess.run(self.wrap(argv), capture_output=True, text=True, **kw)  # type: ignore[call-overload]

    def wrap(self, argv: list[str]) -> list[str]:
        procs = self.cgroup / "cgroup.procs"
        return [
            "sh",
            "-c",
            f'echo $$ > {procs} && exec ip netns exec {self.netns} "$@"',
            "kmlab",
            *argv,
        ]

    def ns(self, argv: list[str]) -> list[str]:
        """argv inside the namespace only (not rewritten)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def probe(self, *args: str, timeout: float = 60) -> dict:
        """Run kmnode_probe.py inside ns+cgroup and return its JSON report."""
        res = self.run_in([sys.executable, str(PROBE), *args], timeout=timeout)
        if res.returncode != 0:
            raise AssertionError(f"probe failed rc={res.returncode}: {res.stderr[-2000:]}")
        return json.loads(res.stdout)


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def stop_process(proc: subprocess.Popen) -> int:
    """SIGTERM an agent the test started (SIGKILL after 20 s); its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def make_lab() -> Iterator[Lab]:
    reason = _can_run()
    if reason:
        pytest.skip(reason)
    name = f"kmtest-{secrets.token_hex(4)}"
    lab = Lab(name, name, CGROUP2_ROOT / name, BPFFS_ROOT / name)
    try:
        _sh("ip", "netns", "add", lab.netns)
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "route", "add", "local", "10.244.0.0/16", "dev", "lo"],
            ["ip", "-6", "route", "add", "local", "fd00:244::/64", "dev", "lo"],
            ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"],
            # IPv6 binds to AnyIP addresses (UDP endpoints) need non-local bind
            ["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"],
            ["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"],
        ):
            _sh(*lab.ns(cmd))
        lab.cgroup.mkdir()
        yield lab
    finally:
        # Our pins first (detaches our links), then the cgroup, then the namespace.
        if lab.bpffs.exists():
            from kmesh_node.datapath import uninstall

            uninstall(str(lab.bpffs))
        _remove_cgroup(lab.cgroup)
        subprocess.run(["ip", "netns", "del", lab.netns], capture_output=True)
        if lab.bpffs.exists():
            shutil.rmtree(lab.bpffs, ignore_errors=True)


def _remove_cgroup(cgroup: Path) -> None:
    if not cgroup.exists():
        return
    # Any process still inside was started by this test: move it back to the root.
    procs = (cgroup / "cgroup.procs").read_text().split()
    for pid in procs:
        with contextlib.suppress(OSError):
            (CGROUP2_ROOT / "cgroup.procs").write_text(pid)
    with contextlib.suppress(OSError):
        cgroup.rmdir()
