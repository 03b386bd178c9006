"""Time until services answer through their VIPs, measured from inside a pod.

    python -m kmesh_lab.vipprobe --since EPOCH|- [--timeout S] [--http] VIP:PORT ...

Run it in a client pod (tools/podexec.sh POD -- python -m kmesh_lab.vipprobe ...), so its
connect() goes through the agent's cgroup hook. It opens non-blocking connections to every
target that has not answered yet, all at once, waits a short round for them, and repeats
until every target answered or --timeout seconds have passed since --since (the moment the
services were written). A target answers when its TCP connect completes (and, with --http,
when an HTTP status line comes back). Before the agent has programmed a VIP, the connect
goes to the real VIP, which nothing in the lab routes: it fails or times out, and the target
is tried again in the next round.

With `--since -` the probe starts first and waits: it prints "ready", reads the epoch of the
change from stdin, and tries at once -- so the caller can start it (a process start in the
pod takes a few hundred ms), then make the change, then hand over its time; the answer
times are then not floored by the probe's own start.

Prints one JSON object: targets, answered, pending (targets that never answered), answer_s
(per target, seconds from --since, null if pending), p50_s, max_s, first_attempt_s (the
floor: when the probe could first try, seconds from --since), rounds. Exit 0 when all
answered, 1 when some did not (the JSON says which), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROUND_S = 0.05  # how long one round waits for its connects (the time resolution)
HTTP_READ_S = 2.0


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @property
    def text(self) -> str:
        return f"{self.host}:{self.port}"


def parse_target(text: str) -> Target:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {text!r} is not VIP:PORT (e.g. 10.96.0.10:80)")
    try:
        socket.inet_aton(host)
    except OSError:
        raise ValueError(f"target {text!r}: {host!r} is not an IPv4 address") from None
    return Target(host, int(port))


def _http_answers(sock: socket.socket) -> bool:
    sock.setblocking(True)
    sock.settimeout(HTTP_READ_S)
    try:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")
        return sock.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def one_round(targets: Sequence[Target], http: bool, wait_s: float = ROUND_S) -> set[Target]:
    """Try every target once, concurrently; return those that answered."""
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    answered: set[Target] = set()
    try:
        for t in targets:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setblocking(False)
            rc = s.connect_ex((t.host, t.port))
            if rc == 0:
                answered.add(t)
            elif rc in (errno.EINPROGRESS, errno.EAGAIN):
                sel.register(s, selectors.EVENT_WRITE, t)
        deadline = time.monotonic() + wait_s
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                sel.unregister(key.fileobj)
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    answered.add(key.data)
        if http:
            by_target = dict(zip(targets, socks, strict=True))
            answered = {t for t in answered if _http_answers(by_target[t])}
    finally:
        sel.close()
        for s in socks:
            s.close()
    return answered


def probe(
    targets: Sequence[Target], since: float, timeout: float, http: bool = False
) -> dict[str, Any]:
    """Try the pending targets round after round until all answered or the time is up."""
    if timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, not {timeout}")
    pending = list(dict.fromkeys(targets))
    answer: dict[Target, float] = {}
    first_attempt = time.time() - since
    rounds = 0
    while pending and time.time() - since < timeout:
        rounds += 1
        started = time.monotonic()
        ok = one_round(pending, http)
        now = time.time() - since
        for t in ok:
            answer[t] = now
        pending = [t for t in pending if t not in ok]
        # a round where every connect failed at once (unreachable) must not spin
        if pending and time.monotonic() - started < 0.02:
            time.sleep(0.02)
    times = sorted(answer.values())
    return {
        "targets": len(dict.fromkeys(targets)),
        "answered": len(answer),
        "pending": [t.text for t in pending],
        "answer_s": {t.text: (round(answer[t], 6) if t in answer else None) for t in targets},
        "p50_s": round(statistics.median(times), 6) if times else None,
        "max_s": round(times[-1], 6) if times else None,
        "first_attempt_s": round(first_attempt, 6),
        "rounds": rounds,
        "timeout_s": timeout,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.vipprobe", description=__doc__)
    parser.add_argument(
        "--since", required=True, help="epoch seconds of the change, or - to read it on stdin"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds from --since")
    parser.add_argument("--http", action="store_true", help="require an HTTP status line")
    parser.add_argument("targets", nargs="+", help="VIP:PORT")
    args = parser.parse_args(argv)
    try:
        targets = [parse_target(t) for t in args.targets]
        if args.since == "-":
            print("ready", flush=True)
            line = sys.stdin.readline()
            if not line.strip():
                raise ValueError("--since -: stdin closed before the time of the change came")
            since = float(line)
        else:
            since = float(args.since)
        result = probe(targets, since, args.timeout, args.http)
    except ValueError as exc:
        print(f"vipprobe: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0 if not result["pending"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
