"""The sidecar peer on the real kernel: HAProxy in each pod, istio-iptables' capture.

Each test brings up its own small lab with kmesh_lab.lab (`kmtest-<random>`: node namespace,
one client and two server pods, cgroups, lab.json in its own state dir under /run, which the
proxy user can reach), runs an HTTP app in each server pod that answers with its name and
the peer address it saw, writes Service/EndpointSlice manifests and meshes the pods with the
peer's CLI (`python -m kmesh_lab.sidecar`). No kmesh_node agent and no kube-proxy rules:
the ClusterIP is known to nobody but the sidecar, and has no route past the node.
Everything is removed in `finally`; only processes the test started are stopped, by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmesh_lab import lab, netns, services
from kmesh_lab.sidecar import apply as sidecar
from kmesh_lab.sidecar import capture

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]

CIDR = "10.251.9.0/24"
UID = 1337
APP = """
import http.server, json, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"server": name, "peer": self.client_address[0]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 80), H)
print("ready", flush=True)
srv.serve_forever()
"""
# One new connection per request, like fortio -keepalive=false; prints one JSON line.
CLIENT = """
import json, sys, time, urllib.error, urllib.request
url, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
out = []
for _ in range(n):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            out.append({"status": r.status, **json.loads(r.read())})
    except urllib.error.HTTPError as e:
        out.append({"status": e.code})
    except OSError as e:
        out.append({"status": 0, "error": str(e)})
    time.sleep(pause)
print(json.dumps(out))
"""


@dataclass
class MiniLab:
    prefix: str
    state: Path
    manifests: Path
    servers: dict[str, str]  # pod -> address

    def ns(self, pod: str) -> str:
        return f"{self.prefix}-{pod}"

    def cli(self, *args: str, check: bool = True) -> dict:
        cmd = [sys.executable, "-m", "kmesh_lab.sidecar", args[0], "--state-dir", str(self.state)]
        if args[0] == "apply":
            cmd += ["--manifests-dir", str(self.manifests)]
        proc = subprocess.run([*cmd, *args[1:]], capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)
        return {"rc": proc.returncode, "stderr": proc.stderr}

    def get(self, url: str, n: int, pause: float = 0.0) -> list[dict]:
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns("client-0"),
                sys.executable,
                "-c",
                CLIENT,
                url,
                str(n),
                str(pause),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    def stats(self, pod: str) -> dict:
        return sidecar.stats(self.state, pod)

    def save(self, pod: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(pod), "iptables-save"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout


@contextlib.contextmanager
def proxy_user() -> Iterator[None]:
    """The proxy user (istio-proxy, uid/gid 1337) as the role creates it; made here when
    missing and removed again afterwards."""
    try:
        pwd.getpwuid(UID)
        made = False
    except KeyError:
        subprocess.run(["groupadd", "--system", "--gid", str(UID), "kmtest-proxy"], check=True)
        subprocess.run(
            [
                "useradd",
                "--system",
                "--uid",
                str(UID),
                "--gid",
                str(UID),
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "kmtest-proxy",
            ],
            check=True,
        )
        made = True
    try:
        yield
    finally:
        if made:
            subprocess.run(["userdel", "kmtest-proxy"], check=False)
            subprocess.run(["groupdel", "kmtest-proxy"], check=False)


@contextlib.contextmanager
def mini_lab() -> Iterator[MiniLab]:
    prefix = f"kmtest-{secrets.token_hex(3)}"
    # Under /run, not pytest's 0700 tmp dirs: the proxy user must reach its config.
    state = Path("/run") / prefix
    spec = lab.build_spec(prefix, CIDR, 1, 2, 0, 0, state_dir=state)
    apps: list[subprocess.Popen[str]] = []
    with proxy_user():
        try:
            lab.up(spec)
            state.chmod(0o755)
            for pod in spec.pods:
                if pod.role != "server":
                    continue
                proc = subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        spec.pod_ns(pod.name),
                        sys.executable,
                        "-c",
                        APP,
                        pod.name,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                apps.append(proc)
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            yield MiniLab(
                prefix,
                state,
                state / "manifests",
                {p.name: p.address for p in spec.pods if p.role == "server"},
            )
        finally:
            for proc in apps:
                proc.kill()  # by PID: only what this test started
                proc.wait(timeout=10)
            with contextlib.suppress(RuntimeError, OSError):
                sidecar.remove(state)
            lab.down(prefix, state)


def _write(mini: MiniLab, count: int, empty: bool = False) -> list[dict]:
    docs, listing = services.manifests(0, count, list(mini.servers.values()), 2, 80)
    if empty:  # one more service whose slice has no endpoint
        extra, more = services.manifests(count, 1, list(mini.servers.values()), 1, 80)
        extra[1]["endpoints"] = []
        docs += extra
        listing += more
    services.write(mini.manifests, "svc", docs)
    return listing


def _stot(stats: dict, proxy: str, row: str) -> int:
    return stats.get(proxy, {}).get(row, {}).get("stot", 0)


def test_request_to_a_vip_takes_the_three_hops() -> None:
    with mini_lab() as mini:
        listing = _write(mini, 1)
        svc = listing[0]
        backend = f"outbound_80__{svc['name']}.{svc['namespace']}"
        first = mini.cli("apply")
        assert first["changed"] is True
        assert first["plane"] == "sidecar" and first["proxy"] == "HAProxy"
        assert (
            first["version"]
            in subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout
        )
        state = json.loads((mini.state / "peer_sidecar.json").read_text())
        assert sorted(state["pods"]) == ["client-0", "server-0", "server-1"]
        for entry in state["pods"].values():
            assert entry["capture_rules"] == capture.rule_count(capture.Capture())
            assert pwd.getpwuid(os.stat(f"/proc/{entry['pid']}").st_uid).pw_uid == UID
        again = mini.cli("apply")
        assert again["changed"] is False

        before = {pod: mini.stats(pod) for pod in state["pods"]}
        n = 12
        answers = mini.get(f"http://{svc['vip']}/", n)
        after = {pod: mini.stats(pod) for pod in state["pods"]}

        assert [a["status"] for a in answers] == [200] * n, answers
        # Hop 3: the app saw the server sidecar (Envoy's inbound source), never the client.
        assert {a["peer"] for a in answers} == {capture.INBOUND_SOURCE}
        assert {a["server"] for a in answers} == set(mini.servers)
        # Hop 1: the client sidecar took every connection and routed it to the service.
        c0, c1 = before["client-0"], after["client-0"]
        assert _stot(c1, "outbound", "FRONTEND") - _stot(c0, "outbound", "FRONTEND") == n
        assert _stot(c1, backend, "BACKEND") - _stot(c0, backend, "BACKEND") == n
        assert _stot(c1, "PassthroughCluster", "BACKEND") == _stot(
            c0, "PassthroughCluster", "BACKEND"
        )
        # Hop 2: the server sidecars took every request in and handed it to their app.
        served = sum(
            _stot(after[p], "InboundPassthroughHTTP", "BACKEND")
            - _stot(before[p], "InboundPassthroughHTTP", "BACKEND")
            for p in mini.servers
        )
        accepted = sum(
            _stot(after[p], "inbound", "FRONTEND") - _stot(before[p], "inbound", "FRONTEND")
            for p in mini.servers
        )
        assert served == n
        assert accepted >= 1  # upstream connections are kept alive and reused

        # An unknown destination (a pod IP) passes through, and is still captured inbound.
        server, address = sorted(mini.servers.items())[0]
        direct = mini.get(f"http://{address}/", 1)
        assert direct[0]["status"] == 200 and direct[0]["server"] == server
        assert direct[0]["peer"] == capture.INBOUND_SOURCE
        c2 = mini.stats("client-0")
        assert (
            _stot(c2, "PassthroughCluster", "BACKEND") - _stot(c1, "PassthroughCluster", "BACKEND")
            == 1
        )


def test_service_change_reloads_without_dropping_and_remove_leaves_nothing() -> None:
    with mini_lab() as mini:
        _write(mini, 1)
        first = mini.cli("apply")
        pids = {p: e["pid"] for p, e in first["pods"].items()}
        listing = _write(mini, 1, empty=True)
        # Requests run through the reload: none may fail.
        results: list[list[dict]] = []
        load = threading.Thread(
            target=lambda: results.append(mini.get(f"http://{listing[0]['vip']}/", 60, 0.05))
        )
        load.start()
        time.sleep(0.5)
        changed = mini.cli("apply")
        load.join(timeout=60)
        assert changed["changed"] is True
        assert {p: e["pid"] for p, e in changed["pods"].items()} == pids  # same masters
        assert all(e["reloaded"] for e in changed["pods"].values())
        assert results and [r["status"] for r in results[0]] == [200] * 60, results
        # The new service has no endpoint: the sidecar answers 503, as Envoy does.
        assert [r["status"] for r in mini.get(f"http://{listing[1]['vip']}/", 2)] == [503, 503]
        assert mini.cli("apply")["changed"] is False

        gone = mini.cli("remove")
        assert gone["changed"] is True
        for pod, pid in pids.items():
            assert not lab.alive(pid)
            assert "ISTIO_" not in mini.save(pod)
            assert not netns.pids_in(mini.ns(pod)) or pod.startswith("server")
        assert not (mini.state / "peer_sidecar.json").exists()
        assert not (mini.state / "sidecar").exists()
        assert mini.cli("remove")["changed"] is False
        # Without the sidecar the pod IP answers the client directly again.
        address = sorted(mini.servers.values())[0]
        assert mini.get(f"http://{address}/", 1)[0]["peer"] != capture.INBOUND_SOURCE


def test_only_listed_pods_are_meshed_and_dropped_pods_are_unmeshed() -> None:
    with mini_lab() as mini:
        _write(mini, 1)
        some = mini.cli("apply", "--pods", "client-0,server-0")
        assert sorted(some["pods"]) == ["client-0", "server-0"]
        assert "ISTIO_" not in mini.save("server-1")
        fewer = mini.cli("apply", "--pods", "client-0")
        assert fewer["changed"] is True and sorted(fewer["unmeshed"]) == ["server-0"]
        assert not lab.alive(some["pods"]["server-0"]["pid"])
        assert "ISTIO_" not in mini.save("server-0")
        assert fewer["pods"]["client-0"]["pid"] == some["pods"]["client-0"]["pid"]
        # The client still reaches the service: its sidecar goes straight to the app.
        answers = mini.get(f"http://{services.vip(0)}/", 4)
        assert [a["status"] for a in answers] == [200] * 4
        assert all(a["peer"] == "10.251.9.2" for a in answers), answers


def test_bad_input_is_named() -> None:
    with mini_lab() as mini:
        _write(mini, 1)
        bad = mini.cli("apply", "--pods", "client-0,nope", check=False)
        assert bad["rc"] == 2 and "does not have: ['nope']" in bad["stderr"]
        bad = mini.cli("apply", "--balance", "source", check=False)
        assert bad["rc"] == 2 and "balance 'source': use one of" in bad["stderr"]
        bad = mini.cli("apply", "--uid", "54321", check=False)
        assert bad["rc"] == 2 and "no user has uid 54321" in bad["stderr"]
        assert not (mini.state / "peer_sidecar.json").exists()


def test_remove_is_safe_when_never_installed(tmp_path: Path) -> None:
    assert sidecar.remove(tmp_path / "nothing") == {"changed": False, "removed": {}}


BAD_STATE = Path("/run/kmtestbad-sc")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("peer_sidecar_balance", "source", "peer_sidecar_balance"),
        ("peer_sidecar_outbound_port", "70000", "is not a TCP port"),
        ("peer_sidecar_stats_port", "15001", "must be three different ports"),
        ("peer_sidecar_timeout_idle", "5min", "is not an HAProxy time"),
        ("peer_sidecar_uid", "0", "not root's"),
        # uid 1 is Debian's `daemon`: never taken over.
        ("peer_sidecar_uid", "1", "uid 1 is not free: user daemon has it"),
        ("peer_sidecar_state_dir", "/run/kmtestbad-none", "lab.json is missing"),
    ],
)
def test_bad_role_variable_is_named_and_nothing_is_meshed(
    variable: str, value: str, message: str
) -> None:
    repo = Path(__file__).resolve().parents[2]
    BAD_STATE.mkdir()
    try:
        (BAD_STATE / "lab.json").write_text('{"pods": {}}\n')
        proc = subprocess.run(
            [
                str(repo / ".venv/bin/ansible-playbook"),
                "playbooks/peer_sidecar.yml",
                "-e",
                f"lab_state_dir={BAD_STATE}",
                "-e",
                f"{variable}={value}",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0
        assert message in proc.stdout, proc.stdout[-3000:]
        assert sorted(p.name for p in BAD_STATE.iterdir()) == ["lab.json"]
    finally:
        shutil.rmtree(BAD_STATE)
