"""Client + listener run inside a test namespace and cgroup; prints a JSON report.

  probe.py tcp PORT TARGETS.json   listen on 0.0.0.0:PORT (TCP), then connect to each
                                    "ip port" of TARGETS (a JSON list, repeats allowed) and
                                    record the peer the kernel actually connected to
  probe.py udp PORT TARGETS.json   UDP echo on the endpoint addresses given by --listen,
                                    send to each target, record the reply's source and
                                    the endpoint that answered
Peers of failed connects are recorded as "error:<errno name>".
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import threading


def _fmt(addr: tuple) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _tcp_listener(port: int, family: int) -> socket.socket:
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:  # separate v4 listener on the same port
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    srv.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    srv.listen(4096)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def tcp(port: int, targets: list[list]) -> dict:
    _tcp_listener(port, socket.AF_INET)
    _tcp_listener(port, socket.AF_INET6)
    peers = []
    for host, tport in targets:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect((host, tport))
                peers.append(_fmt(s.getpeername()))
            except OSError as exc:
                peers.append(f"error:{errno.errorcode.get(exc.errno or 0, str(exc))}")
    return {"peers": peers}


def udp(listen: list[list], targets: list[list]) -> dict:
    for host, port in listen:
        srv = socket.socket(_family(host), socket.SOCK_DGRAM)
        srv.bind((host, port))

        def echo(sock: socket.socket = srv) -> None:
            while True:
                _data, addr = sock.recvfrom(2048)
                sock.sendto(_fmt(sock.getsockname()).encode(), addr)

        threading.Thread(target=echo, daemon=True).start()
    out = []
    for host, port in targets:
        with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"ping", (host, port))
            try:
                data, src = s.recvfrom(2048)
                out.append({"answered_by": data.decode(), "reply_from": _fmt(src)})
            except OSError as exc:
                out.append({"error": str(exc)})
        # connected UDP: connect4 rewrites, send()/recv() need no address
        with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            try:
                s.connect((host, port))
                s.send(b"ping")
                data = s.recv(2048)
                out[-1]["connected_answered_by"] = data.decode()
            except OSError as exc:
                out[-1]["connected_error"] = str(exc)
    return {"replies": out}


def main() -> None:
    mode = sys.argv[1]
    if mode == "tcp":
        port = int(sys.argv[2])
        with open(sys.argv[3]) as f:
            targets = json.load(f)
        print(json.dumps(tcp(port, targets)))
    elif mode == "udp":
        listen = json.loads(sys.argv[2])
        with open(sys.argv[3]) as f:
            targets = json.load(f)
        print(json.dumps(udp(listen, targets)))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
