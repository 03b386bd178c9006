"""`kmesh-node run` / `status` / `uninstall` on the real kernel: the lifecycle contract.

Restart under new-connection load: nginx serves the endpoints inside the test namespace,
wrk (`Connection: close`, one connection per request) hits the ClusterIP from inside the
test cgroup while the agent is stopped with SIGTERM and a new one adopts the pinned state.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmesh_node import libbpf as lb
from kmesh_node.datapath import HOOKS, inspect
from tests.integration.kmnode_lab import Lab, make_lab, stop_process

pytestmark = pytest.mark.root

VIP_A, VIP_B = "10.96.10.1", "10.96.10.2"
EPS_A = ["10.244.10.1", "10.244.10.2", "10.244.10.3"]
EPS_B = ["10.244.11.1"]
HTTP_PORT = 80
TARGET_PORT = 8080


def manifest(name: str, cluster_ip: str, eps: list[str], port: int = HTTP_PORT) -> str:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": TARGET_PORT}],
        },
    }
    eps_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-x1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in eps],
    }
    return yaml.safe_dump_all([svc, eps_slice])


@pytest.fixture
def lab() -> Iterator[Lab]:
    with make_lab() as lab:
        yield lab


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "a.yaml").write_text(manifest("a", VIP_A, EPS_A))
    (d / "b.yaml").write_text(manifest("b", VIP_B, EPS_B))
    return d


def kmesh_node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kmesh_node", *args], capture_output=True, text=True, timeout=timeout
    )


class Agent:
    """One `kmesh-node run` process (outside the test cgroup, like a real node agent)."""

    def __init__(self, lab: Lab, manifests: Path, log: Path, *extra: str) -> None:
        self.lab = lab
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kmesh_node",
                "run",
                "--source",
                f"manifests:{manifests}",
                "--cgroup",
                str(lab.cgroup),
                "--bpffs",
                str(lab.bpffs),
                "--metrics",
                "127.0.0.1:0",
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_for(
        self, frontends: int, replacing: frozenset[int] = frozenset(), timeout: float = 30
    ) -> dict[str, Any]:
        """Until the pinned maps hold `frontends` frontends and every hook is linked to a
        program not in `replacing` (the programs of a previous run)."""
        deadline = time.monotonic() + timeout
        info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited: {self.log()}")
            if (self.lab.bpffs / "version").exists():
                info = inspect(str(self.lab.bpffs))
                links = info.get("links", {})
                progs = {link["prog_id"] for link in links.values()}
                if (
                    info.get("frontends") == frontends
                    and len(links) == len(HOOKS)
                    and progs.isdisjoint(replacing)
                ):
                    return info
            time.sleep(0.1)
        raise AssertionError(f"agent not ready: {info} {self.log()}")

    def stop(self) -> int:
        code = stop_process(self.proc)
        self._log.close()
        return code

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-3000:]


@pytest.fixture
def agents(lab: Lab, manifests: Path, tmp_path: Path) -> Iterator[Any]:
    started: list[Agent] = []

    def start(*extra: str) -> Agent:
        agent = Agent(lab, manifests, tmp_path / f"agent{len(started)}.log", *extra)
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()


def peers(lab: Lab, targets: list[tuple[str, int]]) -> list[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(targets, f)
        f.flush()
        return lab.probe("tcp", str(TARGET_PORT), f.name)["peers"]


def attached_prog_ids(cgroup: Path) -> list[int]:
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return [pid for _h, (_f, at) in HOOKS.items() for pid in lb.prog_query(fd, at)]
    finally:
        os.close(fd)


def test_run_serves_manifests_and_status_reports(lab: Lab, agents: Any) -> None:
    agent = agents()
    agent.wait_for(frontends=2)
    got = peers(lab, [(VIP_A, HTTP_PORT)] * 20 + [(VIP_B, HTTP_PORT)] * 3)
    assert set(got[:20]) <= {f"{a}:{TARGET_PORT}" for a in EPS_A}, got
    assert set(got[20:]) == {f"{EPS_B[0]}:{TARGET_PORT}"}, got
    status = kmesh_node("status", "--json", "--bpffs", str(lab.bpffs))
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["services"] == 2 and info["frontends"] == 2 and info["endpoints"] == 4
    assert info["version"]["compatible"] is True
    assert {link["cgroup"] for link in info["links"].values()} == {str(lab.cgroup)}
    text = kmesh_node("status", "--bpffs", str(lab.bpffs))
    assert "services 2" in text.stdout
    url = re.search(r"metrics (http://\S+)", agent.log())
    assert url, agent.log()
    with urllib.request.urlopen(url.group(1), timeout=10) as resp:
        scraped = resp.read().decode()
    assert re.search(r"^kmesh_node_services 2(\.0)?$", scraped, re.M), scraped[:2000]
    assert re.search(r"^kmesh_node_endpoints 4(\.0)?$", scraped, re.M), scraped[:2000]
    assert agent.stop() == 0
    # SIGTERM left the datapath working
    assert set(peers(lab, [(VIP_B, HTTP_PORT)])) == {f"{EPS_B[0]}:{TARGET_PORT}"}
    assert len(attached_prog_ids(lab.cgroup)) == len(HOOKS)


def test_restart_adopts_and_prunes_what_no_source_names(
    lab: Lab, agents: Any, manifests: Path
) -> None:
    first = agents()
    first.wait_for(frontends=2)
    assert first.stop() == 0
    (manifests / "b.yaml").unlink()
    second = agents()
    info = second.wait_for(frontends=1)
    assert "adopted" in second.log()
    assert info["services"] == 1
    got = peers(lab, [(VIP_A, HTTP_PORT), (VIP_B, HTTP_PORT)])
    assert got[0] in {f"{a}:{TARGET_PORT}" for a in EPS_A}
    assert got[1].startswith("error:"), got  # b is gone: no rewrite, no route


def _nginx(lab: Lab, tmp_path: Path) -> subprocess.Popen[bytes]:
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {TARGET_PORT} reuseport backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""
    )
    proc = subprocess.Popen(lab.ns(["nginx", "-c", str(conf), "-p", str(prefix)]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(
            lab.ns(["bash", "-c", f"exec 3<>/dev/tcp/{EPS_A[0]}/{TARGET_PORT}"]),
            capture_output=True,
        )
        if probe.returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("nginx did not start in the test namespace")


@pytest.mark.skipif(not shutil.which("wrk") or not shutil.which("nginx"), reason="needs wrk+nginx")
def test_restart_under_new_connection_load_loses_nothing(
    lab: Lab, agents: Any, tmp_path: Path
) -> None:
    nginx = _nginx(lab, tmp_path)
    try:
        first = agents()
        before = first.wait_for(frontends=2)
        old_progs = frozenset(link["prog_id"] for link in before["links"].values())
        wrk = subprocess.Popen(
            lab.wrap(
                [
                    "wrk",
                    "-t2",
                    "-c16",
                    "-d6s",
                    "-H",
                    "Connection: close",
                    f"http://{VIP_A}:{HTTP_PORT}/",
                ]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(1.5)
        assert first.stop() == 0  # traffic now runs on the pinned datapath alone
        second = agents()
        after = second.wait_for(frontends=2, replacing=old_progs)
        out, _ = wrk.communicate(timeout=30)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
    new_progs = {link["prog_id"] for link in after["links"].values()}
    assert attached_prog_ids(lab.cgroup) and set(attached_prog_ids(lab.cgroup)) == new_progs
    requests = re.search(r"(\d+) requests in", out)
    assert requests and int(requests.group(1)) > 1000, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out


def test_uninstall_leaves_nothing(lab: Lab, agents: Any) -> None:
    agent = agents()
    agent.wait_for(frontends=2)
    assert agent.stop() == 0
    assert attached_prog_ids(lab.cgroup)
    res = kmesh_node("uninstall", "--bpffs", str(lab.bpffs))
    assert res.returncode == 0, res.stderr
    assert not lab.bpffs.exists()
    assert attached_prog_ids(lab.cgroup) == []
    assert peers(lab, [(VIP_A, HTTP_PORT)])[0].startswith("error:")
    again = kmesh_node("uninstall", "--bpffs", str(lab.bpffs))
    assert again.returncode == 0 and "nothing installed" in again.stdout


def test_run_refuses_incompatible_pinned_state(lab: Lab, agents: Any, manifests: Path) -> None:
    agent = agents()
    agent.wait_for(frontends=2)
    assert agent.stop() == 0
    fd = lb.obj_get(str(lab.bpffs / "version"))
    try:
        from kmesh_node import structs

        old = structs.expected_version()
        old.layout = 0
        lb.update_elem(fd, ct.c_uint32(0), old)
    finally:
        os.close(fd)
    res = kmesh_node(
        "run",
        "--source",
        f"manifests:{manifests}",
        "--cgroup",
        str(lab.cgroup),
        "--bpffs",
        str(lab.bpffs),
        "--metrics",
        "127.0.0.1:0",
    )
    assert res.returncode == 1
    assert "kmesh-node uninstall" in res.stderr and "layout 0" in res.stderr, res.stderr
    # the refused run touched nothing: the old programs still serve
    assert peers(lab, [(VIP_B, HTTP_PORT)])[0] == f"{EPS_B[0]}:{TARGET_PORT}"
