"""kmesh_lab.vipprobe against servers on loopback (no root, no lab needed)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kmesh_lab import servicestep, vipprobe


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_parse_target() -> None:
    assert vipprobe.parse_target("10.96.0.10:80") == vipprobe.Target("10.96.0.10", 80)
    for bad in ("10.96.0.10", "10.96.0.10:0", "host:80", ":80", "10.96.0.10:x"):
        with pytest.raises(ValueError, match=r"VIP:PORT|IPv4"):
            vipprobe.parse_target(bad)


def test_a_listening_target_answers_at_once(http_port: int) -> None:
    target = vipprobe.Target("127.0.0.1", http_port)
    since = time.time()
    out = vipprobe.probe([target], since, timeout=5, http=True)
    assert out["answered"] == 1 and out["pending"] == []
    assert 0 <= out["first_attempt_s"] <= out["max_s"] < 5
    assert out["answer_s"][target.text] == out["max_s"] == out["p50_s"]


def test_a_target_that_never_answers_stays_pending_until_the_timeout(http_port: int) -> None:
    good = vipprobe.Target("127.0.0.1", http_port)
    dead = vipprobe.Target("127.0.0.1", _closed_port())
    started = time.monotonic()
    out = vipprobe.probe([good, dead], time.time(), timeout=0.6)
    assert 0.6 <= time.monotonic() - started < 5
    assert out["answered"] == 1
    assert out["pending"] == [dead.text]
    assert out["answer_s"][dead.text] is None
    assert out["rounds"] >= 2  # it kept trying


def test_a_target_that_starts_listening_later_is_timed_from_since() -> None:
    port = _closed_port()
    since = time.time()
    server: list[ThreadingHTTPServer] = []

    def start_late() -> None:
        time.sleep(0.5)
        srv = ThreadingHTTPServer(("127.0.0.1", port), _Ok)
        server.append(srv)
        srv.serve_forever()

    threading.Thread(target=start_late, daemon=True).start()
    try:
        out = vipprobe.probe([vipprobe.Target("127.0.0.1", port)], since, timeout=10, http=True)
    finally:
        if server:
            server[0].shutdown()
            server[0].server_close()
    assert out["pending"] == []
    assert 0.5 <= out["max_s"] < 5


def test_main_exit_status(http_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert vipprobe.main(["--since", str(time.time()), f"127.0.0.1:{http_port}"]) == 0
    assert json.loads(capsys.readouterr().out)["answered"] == 1
    dead = f"127.0.0.1:{_closed_port()}"
    assert vipprobe.main(["--since", str(time.time()), "--timeout", "0.3", dead]) == 1
    assert json.loads(capsys.readouterr().out)["pending"] == [dead]
    assert vipprobe.main(["--since", "0", "nonsense"]) == 2


def test_a_ready_probe_waits_for_the_time_of_the_change(
    http_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """servicestep's handshake with a real probe process: start, ready, change, go, result.
    The pod wrapper is replaced by one that runs the command here."""
    fake_podexec = tmp_path / "podexec.sh"
    fake_podexec.write_text('#!/bin/sh\nshift 2\nexec "$@"\n')  # drop "POD --"
    fake_podexec.chmod(0o755)
    monkeypatch.setattr(servicestep, "PODEXEC", fake_podexec)
    target = f"127.0.0.1:{http_port}"
    proc = servicestep.start_probe(tmp_path, "client-0", [target], timeout=5)
    time.sleep(0.3)  # the change takes a while; the probe has not tried yet
    since = time.time()
    servicestep.go(proc, since)
    out = servicestep.finish_probe(proc, "client-0", timeout=5)
    assert out["answered"] == 1
    assert 0 <= out["first_attempt_s"] < 0.2  # tried as soon as it was told, not before
    assert out["answer_s"][target] < 0.3
