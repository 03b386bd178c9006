"""Time TCP connect() to one address, many times: the first-packet round trip of a new
connection (SYN out, SYN-ACK back), which is where kube-proxy's linear KUBE-SERVICES walk
costs (only the first packet of a connection traverses the nat table).

    python -m kmesh_lab.connectprobe --target IP:PORT [--count 300] [--interval-ms 2]
                                     [--timeout 2]

Why a probe of its own: the load wrapper's wrk fallback measures latency from the request's
write, after the connection is up, so its latencies never include the connect. Each socket
is closed with SO_LINGER 0 (a RST), so neither side keeps TIME_WAIT for reused ports. Prints
one JSON object: count, errors, and connect_p5/p25/p50/p75/p95/p99/mean in microseconds.
Bounded: count x (interval + timeout).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import sys
import time

PERCENTILES = (5, 25, 50, 75, 95, 99)


def percentile(sorted_vals: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_vals:
        raise ValueError("no values")
    pos = (len(sorted_vals) - 1) * pct / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def connect_once(host: str, port: int, timeout: float) -> float:
    """Microseconds from connect() to established; raises OSError on failure."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t0 = time.perf_counter_ns()
        sock.connect((host, port))
        return (time.perf_counter_ns() - t0) / 1e3
    finally:
        sock.close()


def summarize(values: list[float], errors: int) -> dict[str, float | int]:
    out: dict[str, float | int] = {"count": len(values), "errors": errors}
    if values:
        vals = sorted(values)
        for p in PERCENTILES:
            out[f"connect_p{p}_us"] = percentile(vals, p)
        out["connect_mean_us"] = statistics.fmean(vals)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.connectprobe", description=__doc__)
    parser.add_argument("--target", required=True, help="IP:PORT")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    host, _, port_text = args.target.rpartition(":")
    if not host or not port_text.isdigit() or args.count < 1:
        print("connectprobe: --target must be IP:PORT and --count >= 1", file=sys.stderr)
        return 2
    values: list[float] = []
    errors = 0
    for _ in range(args.count):
        try:
            values.append(connect_once(host, int(port_text), args.timeout))
        except OSError:
            errors += 1
        time.sleep(args.interval_ms / 1e3)
    print(json.dumps(summarize(values, errors)))
    return 0 if values else 1


if __name__ == "__main__":
    sys.exit(main())
