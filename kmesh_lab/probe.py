"""How responsive the node stays under a CPU stress: a tiny command and a tiny request, timed.

    python -m kmesh_lab.probe run --url http://VIP:PORT/ --duration S [--interval S]
    (one JSON line per probe on stdout: {"t", "cmd_ms", "http_ms", "error"})

Every `interval` seconds the probe (1) forks and execs `true` and waits for it -- the
latency of a tiny command, i.e. how long the scheduler makes a runnable task wait -- and
(2) opens a new TCP connection to the URL (through the agent's connect4 hook when the
probe runs in a lab pod), sends one HTTP/1.0 GET and reads the whole answer -- whether the
cluster's services keep answering, and how fast. `t` is CLOCK_MONOTONIC (shared by every
process of the host), so the measuring side can place each probe in its own windows with
`summarize(events, t0, t1)`. The run is bounded by `duration`; a request times out after
`timeout` seconds and is counted as an error.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--url {url!r}: use http://HOST[:PORT]/PATH (plain HTTP)")
    return parts.hostname, parts.port or 80, parts.path or "/"


def time_command(argv: Sequence[str] = ("true",)) -> float:
    """Milliseconds to fork, exec and reap `argv`."""
    t0 = time.monotonic()
    subprocess.run(list(argv), check=True)
    return (time.monotonic() - t0) * 1e3


def time_request(host: str, port: int, path: str, timeout: float) -> float:
    """Milliseconds for connect + one HTTP/1.0 GET + reading the answer to its end."""
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        while chunk := sock.recv(65536):
            head += chunk
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise OSError(f"unexpected answer {head[:40]!r}")
    return (time.monotonic() - t0) * 1e3


def run(
    url: str, duration: float, interval: float = 0.2, timeout: float = 2.0
) -> Iterator[dict[str, Any]]:
    """Probe until `duration` seconds have passed; yield one event per probe."""
    if duration <= 0 or interval <= 0:
        raise ValueError("--duration and --interval must be > 0 seconds (runs are bounded)")
    host, port, path = _target(url)
    end = time.monotonic() + duration
    while (now := time.monotonic()) < end:
        event: dict[str, Any] = {"t": now, "cmd_ms": None, "http_ms": None, "error": None}
        try:
            event["cmd_ms"] = time_command()
            event["http_ms"] = time_request(host, port, path, timeout)
        except (OSError, subprocess.CalledProcessError) as exc:
            event["error"] = str(exc) or type(exc).__name__
        yield event
        time.sleep(max(0.0, now + interval - time.monotonic()))


def _pct(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (values non-empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(events: Iterable[Mapping[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    """Probe figures of the events with t0 <= t < t1 (None where there is nothing to say)."""
    inside = [e for e in events if t0 <= e["t"] < t1]
    out: dict[str, Any] = {
        "probe_count": len(inside),
        "probe_errors": sum(1 for e in inside if e.get("error")),
    }
    for key in ("cmd_ms", "http_ms"):
        vals = [float(e[key]) for e in inside if e.get(key) is not None]
        name = key[: -len("_ms")]
        out[f"probe_{name}_p50_ms"] = _pct(vals, 50) if vals else None
        out[f"probe_{name}_p99_ms"] = _pct(vals, 99) if vals else None
        out[f"probe_{name}_max_ms"] = max(vals) if vals else None
    return out


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Events from the probe's JSON lines (other lines are ignored)."""
    events = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and isinstance(event.get("t"), int | float):
                events.append(event)
    return events


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.probe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="probe for --duration seconds, one JSON line per probe")
    r.add_argument("--url", required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--interval", type=float, default=0.2)
    r.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        for event in run(args.url, args.duration, args.interval, args.timeout):
            print(json.dumps(event), flush=True)
    except ValueError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
