"""Test doubles for the sources: a recording Sink and a tiny Kubernetes API server.

`FakeApiServer` speaks just enough of the API server's list/watch protocol on 127.0.0.1
for `kmesh_node.sources.kubernetes`: paged lists (`limit`/`continue`, items without
kind/apiVersion like the real typed lists), chunked JSON watch streams from a
resourceVersion, BOOKMARK events, an ERROR event with code 410 for a compacted version,
bearer-token auth, and injected 500s. Test modules import it as `from tests import fakes`.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kmesh_node.model import LbService, Rejection

PATHS = {
    "/api/v1/services": "Service",
    "/apis/discovery.k8s.io/v1/endpointslices": "EndpointSlice",
}
API_VERSIONS = {"Service": "v1", "EndpointSlice": "discovery.k8s.io/v1"}
API_KEYS = ("kind", "apiVersion")


class RecordingSink:
    """A Sink that keeps what the datapath would hold, and every call, thread-safely."""

    def __init__(self) -> None:
        self.services: dict[str, LbService] = {}
        self.rejections: list[Rejection] = []
        self.calls: list[tuple[str, Any]] = []
        self.synced_count = 0
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def _record(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        self.threads.add(threading.current_thread().name)
        self._cond.notify_all()

    def upsert(self, svc: LbService) -> None:
        with self._cond:
            self.services[svc.key] = svc
            self._record("upsert", svc)

    def delete(self, key: str) -> None:
        with self._cond:
            self.services.pop(key, None)
            self._record("delete", key)

    def synced(self) -> None:
        with self._cond:
            self.synced_count += 1
            self._record("synced", None)

    def rejected(self, rejection: Rejection) -> None:
        with self._cond:
            self.rejections.append(rejection)
            self._record("rejected", rejection)

    def wait_for(self, predicate: Callable[[RecordingSink], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.02))  # predicates may look beyond the sink
            return True

    def reset_calls(self) -> None:
        with self._cond:
            self.calls.clear()


class FakeApiServer:
    """In-memory Services + EndpointSlices with resourceVersions and watch history."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.rv = 100
        self.min_rv = 0  # watches from a version below this get 410 (compaction)
        self.objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in API_VERSIONS}
        self.history: dict[str, list[tuple[int, str, str]]] = {k: [] for k in API_VERSIONS}
        self.raw: dict[str, list[str]] = {k: [] for k in API_VERSIONS}
        self.fail_next = 0  # this many next requests answer 500
        self.fail_watches = False  # every watch request answers 500 while set
        self.requests: list[tuple[float, str, dict[str, str], int]] = []  # (t, path, query, code)
        self._cond = threading.Condition()
        self._generation = 0  # bumped to end every open watch stream
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop_watches()
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "u", "user": {"token": self.token}}],
                    "contexts": [{"name": "c", "context": {"cluster": "fake", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        return path

    # --- mutations -------------------------------------------------------------------

    def _event(self, kind: str, etype: str, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        obj["kind"], obj["apiVersion"] = kind, API_VERSIONS[kind]
        meta = obj["metadata"]
        key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        if etype == "DELETED":
            self.objects[kind].pop(key, None)
        else:
            self.objects[kind][key] = obj
        self.history[kind].append((self.rv, etype, json.dumps({"type": etype, "object": obj})))
        self._cond.notify_all()

    def apply(self, obj: dict[str, Any]) -> None:
        """Create or update (ADDED / MODIFIED)."""
        kind = obj["kind"]
        meta = obj["metadata"]
        key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        with self._cond:
            self._event(kind, "MODIFIED" if key in self.objects[kind] else "ADDED", obj)

    def delete(self, kind: str, key: str) -> None:
        with self._cond:
            obj = self.objects[kind].get(key)
            if obj is not None:
                self._event(kind, "DELETED", obj)

    def bookmark(self) -> None:
        """Send every open watch a BOOKMARK at the current version (no object change)."""
        with self._cond:
            for kind in API_VERSIONS:
                body = {"kind": kind, "apiVersion": API_VERSIONS[kind]}
                body["metadata"] = {"resourceVersion": str(self.rv)}
                self.history[kind].append(
                    (self.rv, "BOOKMARK", json.dumps({"type": "BOOKMARK", "object": body}))
                )
            self._cond.notify_all()

    def inject_raw(self, kind: str, line: str) -> None:
        """Send one raw line (garbage, for robustness tests) once, on the open or next
        `kind` watch."""
        with self._cond:
            self.raw[kind].append(line)
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget the history: a watch from any version before now gets 410 Gone."""
        with self._cond:
            self.min_rv = self.rv
            for kind in API_VERSIONS:
                self.history[kind].clear()

    def drop_watches(self) -> int:
        """End every open watch stream (like an API server restart). Returns the index in
        `requests` from which requests are newer than the drop."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            return len(self.requests)

    def watches_since(self, kind: str, mark: int) -> int:
        """Watch requests for `kind` answered 200 at or after index `mark` of `requests`."""
        path = next(p for p, k in PATHS.items() if k == kind)
        with self._cond:
            recent = self.requests[mark:]
        return sum(1 for _, p, q, code in recent if p == path and q.get("watch") and code == 200)

    def watch_versions(self, kind: str) -> list[int]:
        """resourceVersions that watch requests for `kind` asked for, in order."""
        path = next(p for p, k in PATHS.items() if k == kind)
        return [
            int(q["resourceVersion"])
            for _, p, q, code in list(self.requests)
            if p == path and q.get("watch") and code == 200
        ]

    # --- HTTP ------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def _send_json(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                kind = PATHS.get(url.path)
                code = 200
                # One atomic step against drop_watches(): a request logged after a drop
                # belongs to the new generation (tests rely on it to avoid races).
                with api._cond:
                    generation = api._generation
                    if self.headers.get("Authorization") != f"Bearer {api.token}":
                        code = 401
                    elif kind is None:
                        code = 404
                    elif api.fail_next > 0 or (api.fail_watches and query.get("watch")):
                        api.fail_next = max(0, api.fail_next - 1)
                        code = 500
                    api.requests.append((time.monotonic(), url.path, query, code))
                if code != 200:
                    self._send_json(code, {"kind": "Status", "code": code, "message": "fake"})
                    return
                if query.get("watch"):
                    self._watch(kind, query, generation)
                else:
                    self._list(kind, query)

            def _list(self, kind: str, query: dict[str, str]) -> None:
                limit = int(query.get("limit", "0") or 0)
                start = int(query.get("continue", "0") or 0)
                with api._cond:
                    keys = sorted(api.objects[kind])
                    end = start + limit if limit else len(keys)
                    # typed lists carry no kind/apiVersion per item
                    page = [
                        {k: v for k, v in api.objects[kind][key].items() if k not in API_KEYS}
                        for key in keys[start:end]
                    ]
                    page = json.loads(json.dumps(page))  # a copy, as the wire would give
                    meta: dict[str, Any] = {"resourceVersion": str(api.rv)}
                if end < len(keys):
                    meta["continue"] = str(end)
                self._send_json(200, {"kind": f"{kind}List", "metadata": meta, "items": page})

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _watch(self, kind: str, query: dict[str, str], generation: int) -> None:
                since = int(query.get("resourceVersion") or 0)
                deadline = time.monotonic() + float(query.get("timeoutSeconds", "30"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    if since < api.min_rv:
                        gone = {
                            "kind": "Status",
                            "code": 410,
                            "reason": "Expired",
                            "message": f"too old resource version: {since} ({api.min_rv})",
                        }
                        self._chunk(json.dumps({"type": "ERROR", "object": gone}).encode())
                        return
                    with api._cond:
                        sent = sum(1 for rv, _, _ in api.history[kind] if rv <= since)
                    while True:
                        with api._cond:
                            while (
                                len(api.history[kind]) <= sent
                                and not api.raw[kind]
                                and api._generation == generation
                                and time.monotonic() < deadline
                            ):
                                api._cond.wait(0.05)
                            if api._generation != generation or time.monotonic() >= deadline:
                                return
                            lines = [line for _, _, line in api.history[kind][sent:]]
                            sent = len(api.history[kind])
                            lines += api.raw[kind]
                            api.raw[kind].clear()
                        for line in lines:
                            self._chunk(line.encode() + b"\n")
                finally:
                    try:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                    except OSError:
                        pass
                    self.close_connection = True

        return Handler


def service(
    name: str,
    ip: str | list[str],
    ports: list[dict[str, Any]] | None = None,
    ns: str = "default",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A v1 Service dict (what a manifest or the API holds)."""
    ips = [ip] if isinstance(ip, str) else ip
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": ips[0],
            "clusterIPs": ips,
            "ports": ports or [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def endpoint_slice(
    name: str,
    service_name: str,
    addresses: list[str],
    ports: list[dict[str, Any]] | None = None,
    ns: str = "default",
    address_type: str = "IPv4",
    not_ready: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A discovery.k8s.io/v1 EndpointSlice dict; `not_ready` addresses get ready: false."""
    endpoints = []
    for a in addresses:
        ep: dict[str, Any] = {"addresses": [a]}
        if a in not_ready:
            ep["conditions"] = {"ready": False}
        endpoints.append(ep)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports if ports is not None else [{"name": "", "port": 8080, "protocol": "TCP"}],
    }
