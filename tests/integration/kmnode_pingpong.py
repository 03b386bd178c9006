"""TCP ping-pong between two pods, for the sockmap acceleration tests; prints JSON.

  kmnode_pingpong.py serve HOST PORT
      echo server: every chunk received on a connection is sent back (one thread per
      connection); prints "ready" once listening, runs until killed
  kmnode_pingpong.py ping HOST PORT ROUNDS SIZE CONNECTS
      one connection, ROUNDS round trips of SIZE bytes (send, then read SIZE back), then
      CONNECTS new connections with one round trip each; reports per-round-trip and
      per-connection latencies in microseconds, the peer the kernel connected to, and
      whether every echo came back intact
  kmnode_pingpong.py blob HOST PORT SIZE
      bulk server: SIZE random bytes, sent with sendfile() (the splice path, as static file
      servers do) to every connection; prints their sha256 once listening
  kmnode_pingpong.py fetch HOST PORT
      read one connection to its end; prints {"bytes": n, "sha256": ...}

The client runs in the client pod and the server in the server pod, both inside the
attached cgroup: that is what makes them "same-node" for the sockhash.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def serve(host: str, port: int) -> None:
    srv = socket.socket(_family(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1024)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean_us": sum(values) / len(values),
        "p50_us": _percentile(values, 0.50),
        "p90_us": _percentile(values, 0.90),
        "p99_us": _percentile(values, 0.99),
    }


def ping(host: str, port: int, rounds: int, size: int, connects: int) -> dict:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    intact = True
    rtts: list[float] = []
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host_, port_ = sock.getpeername()[:2]
        peer = f"[{host_}]:{port_}" if ":" in host_ else f"{host_}:{port_}"
        for _ in range(rounds):
            start = time.perf_counter()
            sock.sendall(payload)
            echoed = _recv_exact(sock, size)
            rtts.append((time.perf_counter() - start) * 1e6)
            intact = intact and echoed == payload
    conns: list[float] = []
    for _ in range(connects):
        start = time.perf_counter()
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(payload)
            intact = intact and _recv_exact(sock, size) == payload
        conns.append((time.perf_counter() - start) * 1e6)
    return {
        "peer": peer,
        "intact": intact,
        "payload_bytes": 2 * size * (rounds + connects),  # both directions
        "rtt": _summary(rtts),
        "connect_request": _summary(conns),
    }


def blob(host: str, port: int, size: int) -> None:
    data = os.urandom(size)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        srv = socket.socket(_family(host), socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(64)
        print(hashlib.sha256(data).hexdigest(), flush=True)
        while True:
            conn, _ = srv.accept()
            with conn:
                f.seek(0)
                conn.sendfile(f)


def fetch(host: str, port: int) -> dict:
    digest, total = hashlib.sha256(), 0
    with socket.create_connection((host, port), timeout=10) as sock:
        while chunk := sock.recv(65536):
            digest.update(chunk)
            total += len(chunk)
    return {"bytes": total, "sha256": digest.hexdigest()}


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        serve(argv[1], int(argv[2]))
    elif argv[0] == "blob":
        blob(argv[1], int(argv[2]), int(argv[3]))
    elif argv[0] == "fetch":
        print(json.dumps(fetch(argv[1], int(argv[2]))))
    elif argv[0] == "ping":
        host, port, rounds, size, connects = argv[1], *map(int, argv[2:6])
        print(json.dumps(ping(host, port, rounds, size, connects)))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}; use serve, ping, blob or fetch")


if __name__ == "__main__":
    main(sys.argv[1:])
