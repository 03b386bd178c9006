"""The node agent: a `Sink` that drives the datapath, plus the `run` and `status` commands.

`run`: build the source (configuration errors surface before the kernel is touched), open or
adopt the pinned datapath, serve metrics, follow the source until SIGTERM/SIGINT, then exit
leaving programs attached and maps pinned, so traffic keeps flowing; the next `run` adopts
that state and reconciles it without a gap (`synced()` drops what no source still names).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from kmesh_node.datapath import Datapath, inspect
from kmesh_node.model import LbPolicy, LbService, Rejection

log = logging.getLogger(__name__)

SOURCE_JOIN_TIMEOUT_S = 10.0


class _MetricsLike(Protocol):
    def observe_reconcile(self, seconds: float) -> None: ...

    def rejected(self, reason: str) -> None: ...


class Agent:
    """Implements `model.Sink` on top of a `Datapath`; counts what metrics need."""

    def __init__(self, datapath: Datapath | None = None) -> None:
        self.datapath = datapath
        self.metrics: _MetricsLike | None = None
        self._seen: set[str] = set()  # services upserted since start
        self.rejections = 0

    def _dp(self) -> Datapath:
        if self.datapath is None:
            raise RuntimeError("the agent has no datapath yet: open one before the source runs")
        return self.datapath

    def _observe(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_reconcile(time.perf_counter() - started)

    # -- Sink --------------------------------------------------------------------------
    def upsert(self, svc: LbService) -> None:
        started = time.perf_counter()
        try:
            self._dp().upsert(svc)
        except ValueError as exc:  # the datapath cannot hold it; every other service stays
            self.rejected(Rejection("datapath", f"Service {svc.key}", str(exc)))
            return
        self._seen.add(svc.key)
        self._observe(started)

    def delete(self, key: str) -> None:
        started = time.perf_counter()
        self._dp().delete(key)
        self._seen.discard(key)
        self._observe(started)

    def synced(self) -> None:
        started = time.perf_counter()
        before = self._dp().state()
        self._dp().prune(keep=self._seen)
        after = self._dp().state()
        dropped = before["frontends"] - after["frontends"]
        if dropped:
            log.info("synced: removed %d frontends no source names any more", dropped)
        self._observe(started)

    def rejected(self, rejection: Rejection) -> None:
        self.rejections += 1
        log.warning("rejected %s (%s): %s", rejection.obj, rejection.where, rejection.reason)
        if self.metrics is not None:
            self.metrics.rejected(rejection.reason)

    # -- metrics -------------------------------------------------------------------------
    def state(self) -> dict[str, int]:
        """services, endpoints, frontends, resizes, no_endpoint (and capacities)."""
        out = self._dp().state()
        out["rejected"] = self.rejections
        return out


def run_command(args: Any) -> int:
    from kmesh_node.metrics import Metrics
    from kmesh_node.sources import open_source

    agent = Agent()
    source = open_source(args.source, agent, LbPolicy(args.lb))
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: stopping; the datapath stays attached", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    datapath = Datapath.open(
        args.bpffs,
        args.cgroup,
        stress_loops=args.stress_loops,
        accelerate=getattr(args, "accelerate", False),
    )
    agent.datapath = datapath
    metrics = Metrics(args.bpffs, agent.state)
    agent.metrics = metrics
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            source.run(stop)
        except BaseException as exc:
            failed.append(exc)
            log.exception("source %s failed", args.source)
            stop.set()

    try:
        metrics.start(args.metrics)
        host, port = metrics.address or ("?", 0)
        log.info(
            "kmesh-node running: source %s, cgroup %s, pins %s%s%s, metrics http://%s:%d/metrics",
            args.source,
            args.cgroup,
            args.bpffs,
            " (adopted)" if datapath.adopted else "",
            ", sockmap acceleration on" if datapath.accelerate else "",
            host,
            port,
        )
        thread = threading.Thread(target=follow, name="source", daemon=True)
        thread.start()
        while not stop.wait(1.0):
            pass
        thread.join(timeout=SOURCE_JOIN_TIMEOUT_S)
    finally:
        metrics.stop()
        datapath.close()
    log.info(
        "stopped; programs stay attached and maps pinned under %s "
        "(`kmesh-node uninstall --bpffs %s` removes them)",
        args.bpffs,
        args.bpffs,
    )
    if failed:
        raise RuntimeError(f"the source {args.source} stopped: {failed[0]}")
    return 0


def _cgroup2_root() -> Path | None:
    with open("/proc/mounts") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    return None


def cgroup_path(cgroup_id: int) -> str | None:
    """Path of the cgroup2 directory whose id (inode) is `cgroup_id`, if it still exists."""
    root = _cgroup2_root()
    if root is None or cgroup_id == 0:
        return None
    for dirpath, _dirs, _files in os.walk(root):
        try:
            if os.stat(dirpath).st_ino == cgroup_id:
                return dirpath
        except OSError:
            continue
    return None


def status_command(args: Any) -> int:
    info = inspect(args.bpffs)
    for link in info.get("links", {}).values():
        link["cgroup"] = cgroup_path(link["cgroup_id"])
    sockops = info.get("accel", {}).get("links", {}).get("sockops")
    if sockops:
        sockops["cgroup"] = cgroup_path(sockops["cgroup_id"])
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    if not info["installed"]:
        print(f"not installed: nothing pinned under {args.bpffs}")
        return 0
    version = info.get("version")
    if version is None:
        print(f"{args.bpffs}: pinned objects without a version stamp: {', '.join(info['pins'])}")
        return 0
    compat = "compatible" if version["compatible"] else "INCOMPATIBLE (run kmesh-node uninstall)"
    print(f"pins under {args.bpffs}: layout {version['layout']} ({compat})")
    if not version["compatible"]:
        return 0
    print(
        f"services {info['services']}  frontends {info['frontends']}  "
        f"endpoints {info['endpoints']}  capacity {info['capacity']}"
    )
    for name, m in info["maps"].items():
        print(f"  map {name:<4} entries {m['entries']:>8}  capacity {m['capacity']:>8}")
    for hook, link in info["links"].items():
        where = link["cgroup"] or ("detached" if not link["attached"] else "?")
        print(f"  hook {hook:<9} prog {link['prog_id']:>6}  cgroup {where}")
    _print_accel(info.get("accel", {}))
    for name, value in info.get("counters", {}).items():
        print(f"  counter {name} {value}")
    return 0


def _print_accel(acc: dict[str, Any]) -> None:
    if not acc.get("links") and "sockhash" not in acc:
        print("  acceleration off (run --accelerate to turn it on)")
        return
    links = acc["links"]
    sockops, sk_msg = links.get("sockops"), links.get("sk_msg")
    if sockops:
        where = sockops.get("cgroup") or ("detached" if not sockops["attached"] else "?")
        print(f"  hook {'sockops':<9} prog {sockops['prog_id']:>6}  cgroup {where}")
    if sk_msg:
        on = f"sockhash map {sk_msg['map_id']}" if sk_msg["attached"] else "detached"
        print(f"  hook {'sk_msg':<9} prog {sk_msg['prog_id']:>6}  {on}")
    hash_ = acc.get("sockhash", {})
    state = "on" if acc.get("enabled") else "INCOMPLETE (restart the agent)"
    print(
        f"  acceleration {state}: sockhash {hash_.get('entries', 0)} sockets "
        f"of {hash_.get('max_entries', 0)}"
    )
