"""The join between validated services and slices, and what it tells the sink.

Both sources put validated specs (see `kmesh_node.translate`) here; the store recomputes only
the services an update touches, at `flush()`, and calls the sink only when a service's
`LbService` really changed. Cross-object rules live here:

- slices join their service by the service-name label (a slice may move between services);
- a ClusterIP:port/protocol claimed by two services stays with the first claimant; the
  second is served without that frontend (and told why through a Rejection), and gets it
  when the first releases it;
- a resync (initial listing, relist after 410 Gone) replaces one kind of object wholesale:
  objects not seen again are removed, and the sink hears `synced()` after the flush.

Not thread-safe: one source thread owns it, as the Sink contract requires.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

from kmesh_node.model import Frontend, LbPolicy, LbService, Rejection, Sink
from kmesh_node.translate import ServiceSpec, SliceSpec, translate

log = logging.getLogger(__name__)


class ServiceStore:
    def __init__(self, sink: Sink, default_policy: LbPolicy) -> None:
        self._sink = sink
        self._default = default_policy
        self._services: dict[str, ServiceSpec] = {}
        self._service_where: dict[str, str] = {}
        self._arrival: dict[str, int] = {}  # key -> first-seen sequence: decides "first"
        self._seq = itertools.count()
        self._slices: dict[str, SliceSpec] = {}
        self._slices_of: dict[str, dict[str, SliceSpec]] = {}  # service key -> its slices
        self._emitted: dict[str, LbService] = {}
        self._owner: dict[Frontend, str] = {}
        self._owned: dict[str, set[Frontend]] = {}  # service -> frontends it owns
        self._waiting: dict[Frontend, set[str]] = {}  # frontend -> services denied it
        self._denied: dict[str, set[Frontend]] = {}  # service -> frontends it is denied
        self._reported: dict[str, set[Frontend]] = {}  # denials already told to the sink
        self._dirty: set[str] = set()
        self._resync_seen: dict[str, set[str]] | None = None

    # --- reading ---------------------------------------------------------------------

    def emitted(self) -> dict[str, LbService]:
        """What the sink currently holds (as far as this store told it)."""
        return dict(self._emitted)

    def has_service(self, key: str) -> bool:
        return key in self._services

    def has_slice(self, key: str) -> bool:
        return key in self._slices

    # --- updates (take effect at flush) ---------------------------------------------------

    def mark_seen(self, kind: str, key: str) -> None:
        """During a resync: keep `kind` `key` as it is (e.g. its new version was refused)."""
        if self._resync_seen is not None and kind in self._resync_seen:
            self._resync_seen[kind].add(key)

    def put_service(self, spec: ServiceSpec, where: str) -> bool:
        """Add or replace a service; True when it differs from what the store had."""
        key = spec.key
        if self._resync_seen is not None:
            self._resync_seen["Service"].add(key)
        if key not in self._arrival:
            self._arrival[key] = next(self._seq)
        self._service_where[key] = where
        if self._services.get(key) == spec:
            return False
        self._services[key] = spec
        # Report again the frontends this version is denied (it is a new statement).
        self._reported.pop(key, None)
        self._dirty.add(key)
        return True

    def remove_service(self, key: str) -> None:
        if self._services.pop(key, None) is None:
            return
        self._service_where.pop(key, None)
        self._dirty.add(key)

    def put_slice(self, spec: SliceSpec) -> bool:
        """Add or replace a slice; True when it differs from what the store had."""
        if self._resync_seen is not None:
            self._resync_seen["EndpointSlice"].add(spec.key)
        old = self._slices.get(spec.key)
        if old == spec:
            return False
        if old is not None and old.service_key != spec.service_key:
            self._unlink_slice(old)
        self._slices[spec.key] = spec
        self._slices_of.setdefault(spec.service_key, {})[spec.key] = spec
        self._dirty.add(spec.service_key)
        return True

    def remove_slice(self, key: str) -> None:
        old = self._slices.pop(key, None)
        if old is not None:
            self._unlink_slice(old)

    def _unlink_slice(self, spec: SliceSpec) -> None:
        siblings = self._slices_of.get(spec.service_key)
        if siblings is not None:
            siblings.pop(spec.key, None)
            if not siblings:
                del self._slices_of[spec.service_key]
        self._dirty.add(spec.service_key)

    # --- resync ----------------------------------------------------------------------

    def begin_resync(self) -> None:
        """Start a full listing: whatever is not put again before end_resync goes away."""
        self._resync_seen = {"Service": set(), "EndpointSlice": set()}

    def end_resync(self, kinds: tuple[str, ...] = ("Service", "EndpointSlice")) -> None:
        """Drop the `kinds` not seen since begin_resync, flush, and tell the sink synced()."""
        seen = self._resync_seen
        self._resync_seen = None
        if seen is None:
            raise RuntimeError("end_resync() without begin_resync(); call begin_resync() first")
        if "Service" in kinds:
            for key in [k for k in self._services if k not in seen["Service"]]:
                self.remove_service(key)
        if "EndpointSlice" in kinds:
            for key in [k for k in self._slices if k not in seen["EndpointSlice"]]:
                self.remove_slice(key)
        self.flush()
        self._sink.synced()

    # --- flush -----------------------------------------------------------------------

    def flush(self) -> None:
        """Recompute every touched service, oldest first, and tell the sink what changed."""
        while self._dirty:
            batch = sorted(self._dirty, key=lambda k: self._arrival.get(k, -1))
            self._dirty.clear()
            for key in batch:
                self._recompute(key)

    def _release(self, key: str, frontends: Iterable[Frontend]) -> None:
        owned = self._owned.get(key)
        for fe in frontends:
            if self._owner.get(fe) == key:
                del self._owner[fe]
                if owned is not None:
                    owned.discard(fe)
                waiting = self._waiting.get(fe)
                if waiting:
                    # The earliest waiting service gets it at its recompute.
                    self._dirty.update(waiting)

    def _clear_denials(self, key: str) -> None:
        for fe in self._denied.get(key, ()):
            waiting = self._waiting.get(fe)
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self._waiting[fe]

    def _recompute(self, key: str) -> None:
        spec = self._services.get(key)
        previous = self._emitted.get(key)
        if spec is None:
            self._clear_denials(key)
            self._denied.pop(key, None)
            self._reported.pop(key, None)
            self._arrival.pop(key, None)
            self._release(key, list(self._owned.pop(key, ())))
            if previous is not None:
                del self._emitted[key]
                self._tell_delete(key)
            return
        full = translate(spec, self._slices_of.get(key, {}).values(), self._default)
        reported = self._reported.setdefault(key, set())
        self._clear_denials(key)
        granted = {}
        denied: set[Frontend] = set()
        owned = self._owned.setdefault(key, set())
        for fe, eps in full.frontends.items():
            owner = self._owner.get(fe)
            if owner is None or owner == key:
                self._owner[fe] = key
                owned.add(fe)
                granted[fe] = eps
                continue
            denied.add(fe)
            self._waiting.setdefault(fe, set()).add(key)
            if fe not in reported:
                reported.add(fe)
                self._report(
                    key,
                    f"frontend {_fe_text(fe)} is already served by Service {owner}; this "
                    "frontend is skipped (the first service keeps it): give one of them "
                    "another clusterIP or port",
                )
        self._denied[key] = denied
        reported.intersection_update(denied)  # a frontend granted since may be denied anew
        self._release(key, [fe for fe in owned if fe not in granted])
        if not granted:
            # Every frontend is taken by others: nothing of this service can be served.
            if previous is not None:
                del self._emitted[key]
                self._tell_delete(key)
            return
        svc = full if len(granted) == len(full.frontends) else LbService(key, full.policy, granted)
        if svc != previous:
            try:
                self._sink.upsert(svc)
            except Exception as exc:
                # One service the datapath cannot take (e.g. its maps are full) must not stop
                # the others; it is retried when it changes again.
                log.exception("the sink failed to take Service %s", key)
                self._report(key, f"the datapath refused it ({exc}); see the agent log")
                return
            self._emitted[key] = svc

    def _tell_delete(self, key: str) -> None:
        try:
            self._sink.delete(key)
        except Exception:
            log.exception("the sink failed to delete Service %s", key)

    def _report(self, key: str, reason: str) -> None:
        reject(self._sink, self._service_where.get(key, "?"), f"Service {key}", reason)


def _fe_text(fe: Frontend) -> str:
    host = f"[{fe.address}]" if ":" in fe.address else fe.address
    return f"{host}:{fe.port}/{fe.protocol}"


def reject(sink: Sink, where: str, obj: str, reason: str) -> None:
    """Log a refused object and tell the sink (which counts it)."""
    log.warning("rejected %s in %s: %s", obj, where, reason)
    sink.rejected(Rejection(where=where, obj=obj, reason=reason))
