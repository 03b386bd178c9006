"""Processes the benchmark starts inside its own network namespace (and, for clients, its
own cgroup, where the connect4 program is attached): a TCP sink and two connect loops.

Run as `python -m kmesh_node.bench_worker MODE JSON_ARGS`; prints one JSON line (or
"ready" for the server) and exits. Every mode is bounded in time by its arguments.
"""

from __future__ import annotations

import errno
import json
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any

# close with RST: no TIME_WAIT on either side, so a loop of short connections never runs
# out of ports and measures connect(), not teardown
LINGER_RST = struct.pack("ii", 1, 0)


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles ("p50", ...) plus min, max, mean and count."""
    if not values:
        return {"count": 0}
    s = sorted(values)
    out: dict[str, float] = {"count": len(s), "min": s[0], "max": s[-1], "mean": sum(s) / len(s)}
    for p in points:
        rank = max(1, -(-len(s) * p // 100))  # ceil(n * p / 100), 1-based
        out[f"p{p:g}"] = s[int(rank) - 1]
    return out


def serve(port: int, seconds: float) -> None:
    """Accept and drop connections on 0.0.0.0:port (inside the bench netns) for `seconds`."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(4096)
    srv.settimeout(0.5)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            continue
        # a plain close (FIN): an RST here could reach the client before its connect()
        # has read the result, and be reported as a failed connect
        conn.close()


def _connect(target: tuple[str, int], errors: Counter[str]) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(2.0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.connect(target)
        return True
    except OSError as exc:
        errors[_err_name(exc)] += 1
        return False
    finally:
        s.close()


def _err_name(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def connect_loop(targets: list[tuple[str, int]], count: int, seconds: float) -> dict[str, Any]:
    """`count` connects round-robin over `targets` (stops early at `seconds`)."""
    ok = 0
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    for i in range(count):
        if _connect(targets[i % len(targets)], errors):
            ok += 1
        if not i % 256 and time.monotonic() > deadline:
            break
    return {"connects": ok, "errors": sum(errors.values()), "error_kinds": dict(errors)}


def compare(
    pairs: list[tuple[tuple[str, int], tuple[str, int]]], count: int, seconds: float
) -> dict[str, Any]:
    """connect() latency via VIP vs direct to the same endpoint, interleaved so that both
    see the same machine state; `count` of each."""
    vip_us: list[float] = []
    direct_us: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    clock = time.perf_counter_ns
    for i in range(count):
        vip, direct = pairs[i % len(pairs)]
        order = (
            ((vip, vip_us), (direct, direct_us)) if i % 2 else ((direct, direct_us), (vip, vip_us))
        )
        for target, sink in order:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(2.0)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            t0 = clock()
            try:
                s.connect(target)
                sink.append((clock() - t0) / 1000)
            except OSError as exc:
                errors[_err_name(exc)] += 1
            finally:
                s.close()
        if time.monotonic() > deadline:
            break
    return {
        "vip_us": percentiles(vip_us),
        "direct_us": percentiles(direct_us),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


def peer(target: tuple[str, int]) -> str:
    """Where the connect hook sends a connection to `target`: start a non-blocking connect
    and read the peer address it was given ("-" when the kernel refused it, e.g. an
    unrewritten VIP with no route). Needs a listener at the endpoints: on loopback a
    refused connect fails inside connect() and leaves no peer to read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.setblocking(False)
        if s.connect_ex(target) not in (0, errno.EINPROGRESS):
            return "-"
        try:
            return str(s.getpeername()[0])
        except OSError:
            return "-"
    finally:
        s.close()


def peers() -> None:
    """One "IP PORT" per stdin line -> one peer address per stdout line, until EOF."""
    for line in sys.stdin:
        ip, port = line.split()
        print(peer((ip, int(port))), flush=True)


def main(argv: list[str]) -> int:
    mode = argv[1]
    if mode == "peers":
        peers()
        return 0
    raw = json.loads(argv[2])
    if mode == "serve":
        serve(raw["port"], raw["seconds"])
        return 0
    if mode == "loop":
        targets = [tuple(t) for t in raw["targets"]]
        result = connect_loop(targets, raw["count"], raw["seconds"])  # type: ignore[arg-type]
    elif mode == "compare":
        pairs = [(tuple(v), tuple(d)) for v, d in raw["pairs"]]
        result = compare(pairs, raw["count"], raw["seconds"])  # type: ignore[arg-type]
    else:
        raise SystemExit(f"unknown mode {mode!r}: serve, loop, compare or peers")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
