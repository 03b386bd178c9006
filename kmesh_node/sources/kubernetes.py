"""`--source kubernetes`: list + watch Services and EndpointSlices from the API server.

One reflector thread per resource does what client-go's reflector does:
list (paged, `limit`/`continue`) -> watch from the list's resourceVersion (bookmarks on)
-> on a normal end of the watch, watch again from the last resourceVersion seen -> on
410 Gone (the version was compacted away), list again -> on any other error, back off
exponentially (with jitter, up to a cap) and retry; a success resets the backoff.

The reflectors only queue what they read; the thread that called `run` applies it to the
store and so is the only one to call the sink. Nothing reaches the sink until both first
listings are in (a service without its slices would look endpoint-less for a moment, which
would break traffic for a service adopted from a previous agent run); then `synced()`.
After each relist the kind is replaced wholesale (deletions missed during the gap are
applied) and `synced()` is called again.

Configuration: the in-cluster service account when running in a pod, else $KUBECONFIG or
~/.kube/config, loaded by the `kubernetes` client package (all auth methods it supports,
token refresh included); the HTTP itself is plain urllib3 from that configuration, so the
objects stay raw dicts (the typed client would deserialise every object, slowly).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import Configuration
from kubernetes.client.rest import RESTClientObject
from kubernetes.config.incluster_config import InClusterConfigLoader

from kmesh_node.model import LbPolicy, Sink
from kmesh_node.sources.gcpause import gc_paused
from kmesh_node.sources.store import ServiceStore, reject
from kmesh_node.translate import (
    Ignored,
    InvalidObject,
    ServiceSpec,
    SliceSpec,
    object_id,
    parse_object,
)

log = logging.getLogger(__name__)

WHERE = "kubernetes"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# kind -> (collection path across all namespaces, apiVersion of its items)
RESOURCES = {
    "Service": ("/api/v1/services", "v1"),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1/endpointslices", "discovery.k8s.io/v1"),
}


class Gone(Exception):
    """410: the resourceVersion (or continue token) is too old; list again."""


class ApiError(Exception):
    """Any other failed request; retried with backoff."""


def load_config(
    kubeconfig: str | None = None, service_account: Path = SERVICE_ACCOUNT_DIR
) -> Configuration:
    """`kubeconfig` when given; else the in-cluster service account (in a pod); else
    $KUBECONFIG or ~/.kube/config."""
    cfg = Configuration()
    try:
        if kubeconfig:
            kube_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        elif os.environ.get("KUBERNETES_SERVICE_HOST") and (service_account / "token").exists():
            InClusterConfigLoader(
                token_filename=str(service_account / "token"),
                cert_filename=str(service_account / "ca.crt"),
            ).load_and_set(cfg)
        else:
            # Read $KUBECONFIG now: the client package reads it once, at import time.
            kube_config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg
            )
    except (kube_config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise RuntimeError(
            f"cannot load a Kubernetes client configuration ({exc}); run the agent in a pod "
            "with a service account, or point $KUBECONFIG (or --source "
            "kubernetes:PATH) at a kubeconfig file, or use --source manifests:DIR"
        ) from None
    return cfg


class _Reflector:
    """List + watch one resource; puts ("list", kind, items) / (type, kind, obj) on a queue."""

    def __init__(
        self,
        kind: str,
        http: urllib3.PoolManager,
        cfg: Configuration,
        out: queue.Queue[tuple[str, str, Any]],
        stop: threading.Event,
        *,
        backoff_initial: float,
        backoff_cap: float,
        watch_timeout_s: int,
        page_size: int,
    ) -> None:
        self.kind = kind
        self._path, self._api_version = RESOURCES[kind]
        self._http = http
        self._cfg = cfg
        self._out = out
        self._stop = stop
        self._backoff_initial = backoff_initial
        self._backoff_cap = backoff_cap
        self._watch_timeout_s = watch_timeout_s
        self._page_size = page_size
        self._lock = threading.Lock()
        self._response: urllib3.BaseHTTPResponse | None = None
        self.lists = 0  # how many full listings were done (tests and logs)

    # --- HTTP ------------------------------------------------------------------------

    def _request(self, query: dict[str, Any], read_timeout: float) -> urllib3.BaseHTTPResponse:
        headers = {"Accept": "application/json"}
        for auth in self._cfg.auth_settings().values():
            headers[auth["key"]] = auth["value"]
        if self._cfg.username or self._cfg.password:
            headers["authorization"] = self._cfg.get_basic_auth_token()
        url = f"{self._cfg.host.rstrip('/')}{self._path}?{urlencode(query)}"
        try:
            resp = self._http.request(
                "GET",
                url,
                headers=headers,
                preload_content=False,
                retries=False,
                timeout=urllib3.Timeout(connect=10.0, read=read_timeout),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(f"GET {url}: {exc}") from None
        if resp.status == 200:
            return resp
        body = resp.read(4096).decode("utf-8", "replace")
        resp.release_conn()
        if resp.status == 410:
            raise Gone(body)
        hint = ""
        if resp.status in (401, 403):
            hint = (
                " (grant the agent list and watch on services and endpointslices.discovery.k8s.io)"
            )
        raise ApiError(f"GET {url}: HTTP {resp.status}{hint}: {body[:300]}")

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": self._page_size}
        version = ""
        while True:
            resp = self._request(query, read_timeout=60.0)
            try:
                page = json.loads(resp.read())
            except ValueError as exc:
                raise ApiError(f"list {self.kind}: response is not JSON ({exc})") from None
            finally:
                resp.release_conn()
            meta = page.get("metadata") or {}
            version = version or meta.get("resourceVersion", "")
            for item in page.get("items") or []:
                # Items of a typed list carry no kind/apiVersion: put them back, so the
                # translator sees the same objects as from a watch or a manifest.
                item.setdefault("kind", self.kind)
                item.setdefault("apiVersion", self._api_version)
                items.append(item)
            token = meta.get("continue")
            if not token:
                return items, version
            query = {"limit": self._page_size, "continue": token}

    def _watch(self, version: str) -> Iterator[dict[str, Any]]:
        query = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": self._watch_timeout_s,
        }
        # The server ends the watch after timeoutSeconds; a silent dead peer is caught by
        # the read timeout a little later.
        resp = self._request(query, read_timeout=self._watch_timeout_s + 30.0)
        with self._lock:
            self._response = resp
        try:
            if self._stop.is_set():
                return
            buffer = b""
            chunks = resp.read_chunked() if resp.chunked else resp.stream(65536)
            for chunk in chunks:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if not self._stop.is_set():
                raise ApiError(f"watch {self.kind}: {exc}") from None
        finally:
            with self._lock:
                self._response = None
            # Close, not just release: a stream left mid-way must not go back to the pool
            # with unread bytes (the next request on it would read garbage).
            resp.close()
            resp.release_conn()

    def interrupt(self) -> None:
        """Unblock a watch read so the thread sees `stop`."""
        with self._lock:
            resp = self._response
        if resp is not None:
            # Shutting the socket down wakes the reader; errors mean it is already closed.
            with contextlib.suppress(OSError, AttributeError):
                resp.shutdown()

    # --- the loop --------------------------------------------------------------------

    def run(self) -> None:
        version: str | None = None
        backoff = self._backoff_initial
        while not self._stop.is_set():
            try:
                if version is None:
                    items, version = self._list()
                    self.lists += 1
                    self._out.put(("list", self.kind, items))
                    backoff = self._backoff_initial
                started, events = time.monotonic(), 0
                # closing(): a watch left early (an error event) must drop its connection now.
                with contextlib.closing(self._watch(version)) as stream:
                    for event in stream:
                        backoff = self._backoff_initial
                        events += 1
                        version = self._handle(event, version)
                if events == 0 and time.monotonic() - started < 1.0 and not self._stop.is_set():
                    # A proxy that closes every stream at once must not make a busy loop.
                    raise ApiError(f"watch {self.kind} ended at once without an event")
                continue  # the server ended the watch (timeoutSeconds): watch again
            except Gone as exc:
                if version is None:  # the list itself expired (a stale continue token)
                    failure: Exception = ApiError(f"list {self.kind}: 410 Gone ({exc})")
                else:
                    log.info("%s: version %s expired (%s); listing again", self.kind, version, exc)
                    version = None
                    continue
            except ApiError as exc:
                failure = exc
            except Exception as exc:
                # A malformed answer must not kill the thread and freeze the services.
                log.exception("%s: unexpected failure", self.kind)
                failure, version = exc, None
            delay = backoff / 2 + random.uniform(0, backoff / 2)
            log.warning("%s: %s; retrying in %.2fs", self.kind, failure, delay)
            backoff = min(self._backoff_cap, backoff * 2)
            self._stop.wait(delay)

    def _handle(self, event: Mapping[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", "410 Gone"))
            raise ApiError(f"watch {self.kind} error event: {obj.get('message', obj)}")
        new_version = (obj.get("metadata") or {}).get("resourceVersion") or version
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            obj.setdefault("kind", self.kind)
            obj.setdefault("apiVersion", self._api_version)
            self._out.put((kind, self.kind, obj))
        # BOOKMARK: only the resourceVersion moves on.
        return new_version


class KubernetesSource:
    def __init__(
        self,
        cfg: Configuration,
        sink: Sink,
        default_policy: LbPolicy,
        *,
        backoff_initial: float = 0.5,
        backoff_cap: float = 30.0,
        watch_timeout_s: int = 300,
        page_size: int = 500,
    ) -> None:
        self._cfg = cfg
        self._sink = sink
        self._store = ServiceStore(sink, default_policy)
        self._http = RESTClientObject(cfg).pool_manager
        self._options = {
            "backoff_initial": backoff_initial,
            "backoff_cap": backoff_cap,
            "watch_timeout_s": watch_timeout_s,
            "page_size": page_size,
        }
        self.reflectors: dict[str, _Reflector] = {}

    def run(self, stop: threading.Event) -> None:
        events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.reflectors = {
            kind: _Reflector(kind, self._http, self._cfg, events, stop, **self._options)  # type: ignore[arg-type]
            for kind in RESOURCES
        }
        threads = [
            threading.Thread(target=r.run, name=f"kmesh-watch-{k}", daemon=True)
            for k, r in self.reflectors.items()
        ]
        for t in threads:
            t.start()
        try:
            self._consume(events, stop)
        finally:
            for r in self.reflectors.values():
                r.interrupt()
            for t in threads:
                t.join(timeout=5.0)

    def _consume(self, events: queue.Queue[tuple[str, str, Any]], stop: threading.Event) -> None:
        pending: list[tuple[str, str, Any]] = []
        listed: set[str] = set()
        initial = True
        while not stop.is_set():
            try:
                batch = [events.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(batch) < 10000:  # apply a burst, then flush once
                try:
                    batch.append(events.get_nowait())
                except queue.Empty:
                    break
            if initial:
                for message in batch:
                    if message[0] == "list":
                        # A relist before the first sync replaces what came before it.
                        pending = [m for m in pending if m[1] != message[1]]
                        listed.add(message[1])
                    pending.append(message)
                if listed != set(RESOURCES):
                    continue
                initial = False
                with gc_paused():
                    self._store.begin_resync()
                    for message in pending:
                        self._apply(*message)
                    pending.clear()
                    self._store.end_resync()
                continue
            with gc_paused():
                for op, kind, payload in batch:
                    if op == "list":
                        self._store.flush()
                        self._store.begin_resync()
                        self._apply(op, kind, payload)
                        self._store.end_resync((kind,))
                    else:
                        self._apply(op, kind, payload)
                self._store.flush()

    def _apply(self, op: str, kind: str, payload: Any) -> None:
        if op == "list":
            for obj in payload:
                self._apply_object(obj)
        elif op == "DELETED":
            oid = object_id(payload)
            if oid is None:
                return
            if kind == "Service":
                self._store.remove_service(oid.key)
            else:
                self._store.remove_slice(oid.key)
        else:
            self._apply_object(payload)

    def _apply_object(self, obj: dict[str, Any]) -> None:
        oid = object_id(obj)
        label = str(oid) if oid is not None else f"{obj.get('kind', 'object')} without a name"
        try:
            spec = parse_object(obj)
        except InvalidObject as exc:
            if oid is not None:
                # Keep the last good version, as for manifests.
                self._store.mark_seen(oid.kind, oid.key)
            reject(self._sink, WHERE, label, exc.reason)
            return
        if isinstance(spec, Ignored):
            log.debug("ignoring %s: %s", spec.oid, spec.reason)
            if spec.oid.kind == "Service":
                self._store.remove_service(spec.oid.key)
            else:
                self._store.remove_slice(spec.oid.key)
            return
        if isinstance(spec, ServiceSpec):
            changed = self._store.put_service(spec, WHERE)
        elif isinstance(spec, SliceSpec):
            changed = self._store.put_slice(spec)
        else:  # pragma: no cover - parse_object returns nothing else
            return
        if changed:
            for warning in spec.warnings:
                reject(self._sink, WHERE, label, warning)
