"""The responsiveness probe: targets, windows of events, and a short run on loopback."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from kmesh_lab import probe


def test_target_parses_plain_http_only() -> None:
    assert probe._target("http://10.96.0.10:80/") == ("10.96.0.10", 80, "/")
    assert probe._target("10.96.0.10") == ("10.96.0.10", 80, "/")
    with pytest.raises(ValueError, match="plain HTTP"):
        probe._target("https://10.96.0.10/")


def test_summarize_keeps_the_window_and_counts_errors() -> None:
    events = [
        {"t": 0.5, "cmd_ms": 100.0, "http_ms": 100.0, "error": None},  # before the window
        {"t": 1.0, "cmd_ms": 1.0, "http_ms": 2.0, "error": None},
        {"t": 1.2, "cmd_ms": 3.0, "http_ms": None, "error": "timed out"},
        {"t": 1.4, "cmd_ms": 2.0, "http_ms": 4.0, "error": None},
        {"t": 2.0, "cmd_ms": 100.0, "http_ms": 100.0, "error": None},  # t1 is excluded
    ]
    s = probe.summarize(events, 1.0, 2.0)
    assert s["probe_count"] == 3
    assert s["probe_errors"] == 1
    assert s["probe_cmd_p50_ms"] == 2.0
    assert s["probe_cmd_p99_ms"] == 3.0
    assert s["probe_cmd_max_ms"] == 3.0
    assert s["probe_http_p50_ms"] == 2.0  # nearest rank of [2, 4]
    assert s["probe_http_max_ms"] == 4.0
    empty = probe.summarize(events, 5.0, 6.0)
    assert empty["probe_count"] == 0 and empty["probe_http_p99_ms"] is None


def test_parse_lines_skips_noise() -> None:
    lines = ["hello", '{"t": 1.5, "cmd_ms": 1}', "{broken", '{"no_t": 1}', ""]
    assert probe.parse_lines(lines) == [{"t": 1.5, "cmd_ms": 1}]


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_run_times_a_command_and_a_request_on_loopback(server: str) -> None:
    events = list(probe.run(server, duration=0.5, interval=0.1))
    assert 2 <= len(events) <= 6
    for e in events:
        assert e["error"] is None
        assert e["cmd_ms"] > 0 and e["http_ms"] > 0
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


def test_run_counts_a_refused_connection_as_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a loopback port that was just free, and is closed again
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    rc = probe.main(["run", "--url", url, "--duration", "0.15", "--interval", "0.1"])
    assert rc == 0
    events = probe.parse_lines(capsys.readouterr().out.splitlines())
    assert events and all(e["error"] and e["http_ms"] is None for e in events)
    assert json.dumps(events)  # JSON-able as printed
    assert probe.main(["run", "--url", url, "--duration", "0"]) == 2
