"""tools/fortio.sh against a real nginx, inside a network namespace this test creates.

The namespace keeps the kernel's TCP counters to ourselves, so the wrapper's measured
TcpActiveOpens can be checked against its SocketCount rule.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmesh_lab import loadgen

pytestmark = pytest.mark.root

WRAPPER = Path(__file__).resolve().parents[2] / "tools" / "fortio.sh"
PORT = 8080  # free by construction: the namespace is new

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  # nginx closes a keep-alive connection every 1000 requests by default; the keepalive
  # test wants the connections to stay up.
  keepalive_requests 100000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "hello from kmtest\\n"; }}
    location /missing {{ return 404; }}
  }}
}}
"""


@dataclass(frozen=True)
class Server:
    netns: str
    url: str


def _need_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for tool in ("ip", "nginx", "wrk"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make bootstrap installs it)")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    _need_root_tools()
    netns = f"kmtest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=10)
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True, timeout=10)
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp_path, port=PORT))
        # `ip netns exec` execs nginx in place, so proc.pid is nginx's master process.
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "nginx", "-c", str(conf), "-p", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            probe = subprocess.run(
                ["ip", "netns", "exec", netns, "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{PORT}"],
                capture_output=True,
                timeout=5,
                check=False,
            )
            if probe.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (tmp_path / "error.log").read_text()
                    if (tmp_path / "error.log").exists()
                    else ""
                )
                pytest.fail(f"nginx did not start listening in {netns}: {log}")
            time.sleep(0.1)
        yield Server(netns=netns, url=f"http://127.0.0.1:{PORT}/")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", netns], check=False, timeout=10)


def load(server: Server, out: Path, *flags: str, url: str | None = None) -> tuple[int, str]:
    env = {**os.environ, "KMESH_LAB_LOADGEN": "wrk"}
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            server.netns,
            str(WRAPPER),
            "load",
            *flags,
            "-json",
            str(out),
            url or server.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    return proc.returncode, proc.stderr


def test_keepalive_on(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "ka.json"
    rc, err = load(server, out, "-c", "4", "-t", "2s", "-qps", "0")
    assert rc == 0, err
    assert "fortio.sh[wrk]" in err
    res = loadgen.parse(out)
    assert res.runner == "wrk"
    assert res.qps > 0
    assert res.count > 0
    assert res.ret_codes == {200: res.count}
    assert res.connections == 4
    assert res.socket_count == 4
    # Measured by the kernel: persistent connections, one open per connection, plus the
    # single connect wrk makes at start to check the address.
    assert res.tcp_active_opens in (4, 5)
    assert 1.5 < res.duration_s < 4
    assert 0 < res.min <= res.percentile(50) <= res.percentile(99) <= res.max


def test_server_closes_are_counted_as_new_sockets(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "closes.json"
    rc, err = load(server, out, "-c", "2", "-t", "1s", "-H", "Connection: close")
    assert rc == 0, err
    res = loadgen.parse(out)
    # Asked to close by the client header, the server ends every response with
    # "Connection: close": the wrapper counts one new socket per response.
    assert res.socket_count == 2 + res.count
    assert res.tcp_active_opens is not None
    assert res.count <= res.tcp_active_opens <= res.count + 2 + 1


def test_keepalive_off(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "noka.json"
    rc, err = load(server, out, "-c", "4", "-t", "2s", "-qps", "0", "-keepalive=false")
    assert rc == 0, err
    res = loadgen.parse(out)
    assert res.qps > 0
    assert res.ret_codes.get(200) == res.count
    assert res.socket_count == res.count
    # One new connection per request; connections still in flight at the stop add <= c,
    # and wrk's address check at start adds one.
    assert res.tcp_active_opens is not None
    assert res.count <= res.tcp_active_opens <= res.count + 4 + 1 + res.errors


def test_rate_limited(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "qps.json"
    rc, err = load(server, out, "-c", "2", "-t", "2s", "-qps", "200")
    assert rc == 0, err
    res = loadgen.parse(out)
    assert res.requested_qps == 200
    assert 150 <= res.qps <= 230


def test_status_codes_are_counted(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "404.json"
    rc, err = load(server, out, "-c", "2", "-t", "1s", url=server.url + "missing")
    assert rc == 0, err
    res = loadgen.parse(out)
    assert res.count > 0
    assert res.ret_codes == {404: res.count}
    assert res.errors == res.count


def test_unreachable_server_fails_with_socket_errors(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "down.json"
    rc, err = load(server, out, "-c", "2", "-t", "1s", url="http://127.0.0.1:9/")
    assert rc == 1
    assert "no request completed" in err
    res = loadgen.parse(out)
    assert res.count == 0
    assert res.ret_codes.get(loadgen.SOCKET_ERROR_CODE, 0) > 0
