"""The kernel half of kmesh_node: load, pin, attach, fill and resize the eBPF datapath.

Python API (used by the agent and by the benchmark)::

    dp = Datapath.open("/sys/fs/bpf/kmesh_node", "/sys/fs/cgroup/unified/app", stress_loops=0)
    dp.apply({"ns/a": svc_a, "ns/b": svc_b})   # full sync, batched: the fast way to load N
    dp.upsert(svc_c)                            # incremental
    dp.delete("ns/a")
    dp.prune(keep={"ns/b", "ns/c"})             # drop adopted leftovers / unknown services
    dp.counters()  -> {"no_endpoint": 3}
    dp.state()     -> {"services": .., "endpoints": .., "frontends": .., "resizes": ..,
                       "no_endpoint": .., "capacity": ..}
    dp.close()                                  # programs stay attached, maps stay pinned

    inspect(bpffs) -> dict                      # read-only view for `status`
    uninstall(bpffs)                            # detach and unpin everything

Layout under the pin directory (every object is pinned, inner maps included, so that
`kmesh-node top` can account for all of them):

    version                   ARRAY[1] kmn_version: refuses incompatible pinned state
    counters                  PERCPU_ARRAY of u64 (no_endpoint, ...)
    orig4, orig6              SK_STORAGE kmn_orig4/6 (UDP reply source rewrite)
    {fe4,fe6,ep4,ep6}_outer   ARRAY_OF_MAPS of 128 (fe) / 1024 (ep) slots over N shards
    {fe4,fe6,ep4,ep6}_inner_<i>  the shards: ARRAY frontend tables (kmesh_node/fetable.py),
                              NO_PREALLOC hash overflow maps (kmesh_node/shardmap.py)
    prog_<hook>, link_<hook>  programs and their cgroup bpf_links
    sockhash, prog_/link_{sockops,sk_msg}  only with --accelerate (kmesh_node/accel.py)

Frontends (ClusterIP:port/proto) are entries carrying the service's first endpoints
inline (5 for IPv4, 3 for IPv6): one table lookup serves most services; endpoints beyond
those live in the ep4/ep6 maps under a per-version "endpoint set" id. Elastic maps grow and
shrink with their content (kmesh_node/shardmap.py) and never miss a lookup while doing so.
Writes are staged and flushed in an order that keeps every lookup valid: overflow
endpoints first, then the frontend values that reference them, then stale entries.
"""

from __future__ import annotations

import ctypes as ct
import errno
import fcntl
import logging
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmesh_node import accel
from kmesh_node import libbpf as lb
from kmesh_node import structs as st
from kmesh_node.fetable import FeTable
from kmesh_node.model import Endpoint, Frontend, LbService
from kmesh_node.progload import Unit, load_programs
from kmesh_node.shardmap import ShardedMap, replace_pin

log = logging.getLogger(__name__)

BPF_FS_MAGIC = 0xCAFE4A11
CGROUP2_SUPER_MAGIC = 0x63677270
MAX_ENDPOINTS_PER_FRONTEND = 0xFFFF  # kmn_fe_hdr.count is a u16

SOURCE = st.BPF_DIR / "sock_addr.c"

# hook name -> (function in sock_addr.c, attach type)
HOOKS: dict[str, tuple[str, int]] = {
    "connect4": ("kmn_connect4", lb.ATTACH_INET4_CONNECT),
    "connect6": ("kmn_connect6", lb.ATTACH_INET6_CONNECT),
    "sendmsg4": ("kmn_sendmsg4", lb.ATTACH_UDP4_SENDMSG),
    "recvmsg4": ("kmn_recvmsg4", lb.ATTACH_UDP4_RECVMSG),
    "sendmsg6": ("kmn_sendmsg6", lb.ATTACH_UDP6_SENDMSG),
    "recvmsg6": ("kmn_recvmsg6", lb.ATTACH_UDP6_RECVMSG),
}

# frontend tables: name -> entry type, entries per shard, hash of a key
FRONTENDS: dict[str, tuple[type[ct.Structure], int, Callable[[Any], int]]] = {
    "fe4": (st.Fe4Ent, st.FE4_ENTRIES, st.hash_fe4),
    "fe6": (st.Fe6Ent, st.FE6_ENTRIES, st.hash_fe6),
}
# overflow endpoint maps: name -> key, value, hash of a key
OVERFLOW: dict[str, tuple[type[ct.Structure], type[ct.Structure], Callable[[Any], int]]] = {
    "ep4": (st.EpxKey, st.Ep4, st.hash_epx),
    "ep6": (st.EpxKey, st.Ep6, st.hash_epx),
}

LOCK_WAIT_S = 15.0  # a new run waits this long for the previous one to finish exiting
UNINSTALL_HINT = "run `kmesh-node uninstall --bpffs {bpffs}` to remove it, then start again"


def _statfs_type(path: str) -> int:
    # os.statvfs has no f_type; ask stat(1) rather than re-declaring struct statfs.
    out = subprocess.run(
        ["stat", "-f", "-c", "%t", path], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip(), 16)


@dataclass
class _FeState:
    owner: str | None  # service key; None = adopted from a previous run, not yet claimed
    svc_id: int
    epset: int
    count: int


Item = tuple[ct.Structure, ct.Structure, bool]  # key, value, key is new (overflow maps)


@dataclass
class _Staged:
    """Writes and deletes of one reconcile step, per address family ("4"/"6"), applied in
    a lookup-safe order by Datapath._flush."""

    ep_items: dict[str, list[Item]]
    fe_items: dict[str, list[ct.Structure]]  # frontend-table entries (key inside)
    fe_del: dict[str, list[ct.Structure]]
    ep_del: dict[str, list[ct.Structure]]

    @classmethod
    def empty(cls) -> _Staged:
        def per() -> dict[str, Any]:
            return {"4": [], "6": []}

        return cls(per(), per(), per(), per())


def _family(fe: Frontend) -> str:
    return "6" if ":" in fe.address else "4"


class Datapath:
    """Pinned maps + loaded programs + cgroup links, and the Python view of their content."""

    def __init__(self, bpffs: str) -> None:
        self.bpffs = Path(bpffs)
        self.fe = {
            name[-1]: FeTable(name, self.bpffs, ent, entries, st.FE_SLOTS, h)
            for name, (ent, entries, h) in FRONTENDS.items()
        }
        self.ep = {
            name[-1]: ShardedMap(name, self.bpffs, k, v, h, st.EP_SLOTS)
            for name, (k, v, h) in OVERFLOW.items()
        }
        # every elastic map by its pin name (fe4, fe6, ep4, ep6)
        self.maps: dict[str, FeTable | ShardedMap] = {f"fe{f}": t for f, t in self.fe.items()}
        self.maps |= {f"ep{f}": m for f, m in self.ep.items()}
        self._fds: dict[str, int] = {}
        self._services: dict[str, LbService] = {}
        self._svc_ids: dict[str, int] = {}
        self._fe: dict[Frontend, _FeState] = {}
        self._next_id = 1
        self._lock = threading.RLock()
        self._lock_fd = -1
        self.adopted = False
        self.accelerate = False

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(
        cls, bpffs: str, cgroup: str | None, stress_loops: int = 0, accelerate: bool = False
    ) -> Datapath:
        """Adopt the pinned state under `bpffs` (or create it), load fresh programs and
        attach them to the cgroup2 directory `cgroup` without a gap (bpf_link update).

        `accelerate` adds the sockmap acceleration (sockops + sk_msg, kmesh_node/accel.py);
        without it, acceleration objects a previous run pinned are detached and removed.
        `cgroup=None` loads and pins but leaves attachments as they are (benchmarks of
        map memory need no hook).
        """
        if stress_loops < 0 or stress_loops > 1_000_000:
            raise RuntimeError(
                f"--stress-loops {stress_loops} is out of range; use 0..1000000 "
                "(the seeds used 10000 and 65535)"
            )
        cgroup_fd = _open_cgroup(cgroup) if cgroup else -1
        dp = cls(bpffs)
        dp.accelerate = accelerate
        try:
            dp._open_maps()
            dp._load_programs(stress_loops)
            if cgroup_fd >= 0:
                dp._attach(cgroup_fd)
        except BaseException:
            dp.close()
            raise
        finally:
            if cgroup_fd >= 0:
                os.close(cgroup_fd)
        return dp

    def _open_maps(self) -> None:
        _ensure_pin_dir(self.bpffs)
        self._lock_fd = _lock_pin_dir(self.bpffs, LOCK_WAIT_S)
        version_path = self.bpffs / "version"
        if version_path.exists():
            fd = lb.obj_get(str(version_path))
            self._fds["version"] = fd
            found = st.Version()
            lb.lookup_elem(fd, ct.c_uint32(0), found)
            want = st.expected_version()
            if bytes(found) != bytes(want):
                raise RuntimeError(
                    f"pinned state under {self.bpffs} has layout {found.layout} "
                    f"(magic {found.magic:#x}, inline {found.inline4}/{found.inline6}); this "
                    f"agent needs layout {want.layout}; " + UNINSTALL_HINT.format(bpffs=self.bpffs)
                )
            self.adopted = True
        else:
            leftovers = sorted(p.name for p in self.bpffs.iterdir())
            if leftovers:
                raise RuntimeError(
                    f"{self.bpffs} holds pinned objects without a kmesh_node version stamp "
                    f"({', '.join(leftovers[:5])}); " + UNINSTALL_HINT.format(bpffs=self.bpffs)
                )
            fd = lb.map_create(lb.MAP_ARRAY, "kmn_version", 4, ct.sizeof(st.Version), 1)
            lb.update_elem(fd, ct.c_uint32(0), st.expected_version())
            self._fds["version"] = fd
            # Stamp first: a crash below leaves a stamped, adoptable, partial state.
            replace_pin(fd, version_path)
        self._fds["counters"] = self._open_or_create(
            "counters", lambda: lb.map_create(lb.MAP_PERCPU_ARRAY, "kmn_counters", 4, 8, st.CTR_MAX)
        )
        self._fds["orig4"] = self._open_or_create("orig4", lambda: _create_orig(st.Orig4))
        self._fds["orig6"] = self._open_or_create("orig6", lambda: _create_orig(st.Orig6))
        if self.accelerate:
            self._fds["sockhash"] = accel.open_sockhash(self.bpffs)
        for emap in self.maps.values():
            emap.open()
        if self.adopted:
            self._adopt_frontends()

    def _open_or_create(self, name: str, create: Any) -> int:
        path = self.bpffs / name
        if path.exists():
            return lb.obj_get(str(path))
        fd = int(create())
        replace_pin(fd, path)
        return fd

    def _adopt_frontends(self) -> None:
        top = 0
        for fam, decode in (("4", st.decode_fe4), ("6", st.decode_fe6)):
            referenced: dict[int, int] = {}
            for ent in self.fe[fam].live_entries():
                h = ent.hdr
                self._fe[decode(ent.key)] = _FeState(None, h.svc_id, h.epset, h.count)
                referenced[h.epset] = h.count
                top = max(top, h.svc_id, h.epset)
            # A run that died between writing and dropping overflow entries left orphans.
            ep_keys, _vals = self.ep[fam].items()
            orphans = [k for k in ep_keys if k.idx >= referenced.get(k.epset, 0)]
            if orphans:
                log.info("dropping %d orphaned overflow endpoints", len(orphans))
                self.ep[fam].remove(orphans)
        self._next_id = top + 1
        log.info("adopted %d pinned frontends from %s", len(self._fe), self.bpffs)

    def _load_programs(self, stress_loops: int) -> None:
        if not SOURCE.exists():
            raise RuntimeError(
                f"eBPF source {SOURCE} is missing; reinstall kmesh-lab from a checkout "
                "(pip install -e .) so that bpf/ sits next to kmesh_node/"
            )
        defines = {
            "KMN_STRESS_LOOPS": stress_loops,
            "KMN_FD_COUNTERS": self._fds["counters"],
            "KMN_FD_ORIG4": self._fds["orig4"],
            "KMN_FD_ORIG6": self._fds["orig6"],
        } | {f"KMN_FD_{name.upper()}": m.outer_fd for name, m in self.maps.items()}
        units = [Unit(str(SOURCE), "CGROUP_SOCK_ADDR", HOOKS)]
        if self.accelerate:
            defines["KMN_FD_SOCKHASH"] = self._fds["sockhash"]
            units += accel.units()
        # compiled in a child process: bcc/LLVM never enter the agent's memory
        progs = load_programs(units, str(st.BPF_DIR), defines)
        for hook, fd in progs.items():
            self._fds[f"prog_{hook}"] = fd

    def _attach(self, cgroup_fd: int) -> None:
        cgroup_id = os.fstat(cgroup_fd).st_ino  # a cgroup2 directory's inode is its id
        for hook, (_func, attach_type) in HOOKS.items():
            prog_fd = self._fds[f"prog_{hook}"]
            link_path = self.bpffs / f"link_{hook}"
            old_link = lb.obj_get(str(link_path)) if link_path.exists() else -1
            try:
                if old_link >= 0 and lb.link_info(old_link).cgroup_id == cgroup_id:
                    lb.link_update(old_link, prog_fd)  # atomic: no moment without a program
                else:
                    link = lb.link_create(prog_fd, cgroup_fd, attach_type)
                    try:
                        replace_pin(link, link_path)
                    finally:
                        os.close(link)
                    if old_link >= 0:  # moved to another cgroup: new one first, then old
                        _detach_quietly(old_link)
            finally:
                if old_link >= 0:
                    os.close(old_link)
            replace_pin(prog_fd, self.bpffs / f"prog_{hook}")
        if self.accelerate:
            accel.attach(
                self.bpffs,
                cgroup_fd,
                self._fds["sockhash"],
                {hook: self._fds[f"prog_{hook}"] for hook in accel.HOOKS},
            )
        else:
            accel.remove(self.bpffs)

    def close(self) -> None:
        """Release this process's handles; pinned maps and attached programs stay."""
        with self._lock:
            for emap in self.maps.values():
                emap.close()
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- content -------------------------------------------------------------------------
    def upsert(self, svc: LbService) -> None:
        """Create or replace one service (only changed frontends are rewritten)."""
        with self._lock:
            staged = _Staged.empty()
            self._stage_service(svc, staged)
            self._flush(staged)

    def delete(self, key: str) -> None:
        """Remove a service; its frontends stop being rewritten. Unknown keys: no-op."""
        with self._lock:
            old = self._services.pop(key, None)
            self._svc_ids.pop(key, None)
            if old is None:
                return
            staged = _Staged.empty()
            for fe in old.frontends:
                state = self._fe.get(fe)
                if state is not None and state.owner == key:
                    self._stage_drop(fe, state, staged)
            self._flush(staged)

    def apply(self, services: Mapping[str, LbService]) -> None:
        """Make the kernel hold exactly `services` (batched; the fast path for bulk loads)."""
        with self._lock:
            staged = _Staged.empty()
            for key in list(self._services):
                if key not in services:
                    old = self._services.pop(key)
                    self._svc_ids.pop(key, None)
                    for fe in old.frontends:
                        state = self._fe.get(fe)
                        if state is not None and state.owner == key:
                            self._stage_drop(fe, state, staged)
            for svc in services.values():
                self._stage_service(svc, staged)
            self._stage_unowned(staged)
            self._flush(staged)

    def prune(self, keep: Iterable[str]) -> None:
        """Delete services not in `keep` and adopted frontends no service claimed."""
        keep = set(keep)
        with self._lock:
            for key in [k for k in self._services if k not in keep]:
                self.delete(key)
            staged = _Staged.empty()
            self._stage_unowned(staged)
            self._flush(staged)

    def _stage_unowned(self, staged: _Staged) -> None:
        for fe, state in list(self._fe.items()):
            if state.owner is None:
                self._stage_drop(fe, state, staged)

    def _alloc_id(self) -> int:
        self._next_id = (self._next_id % 0xFFFFFFFF) + 1
        return self._next_id

    def _encode(
        self, svc: LbService, fe: Frontend, eps: tuple[Endpoint, ...]
    ) -> tuple[str, ct.Structure, list[ct.Structure]]:
        """(family, frontend key, encoded endpoints); ValueError for what the maps cannot
        hold. Pure: runs before anything is staged, so a refused service changes nothing."""
        where = f"{svc.key} {fe.address}:{fe.port}"
        if len(eps) > MAX_ENDPOINTS_PER_FRONTEND:
            raise ValueError(
                f"{where} has {len(eps)} endpoints; the datapath holds at most "
                f"{MAX_ENDPOINTS_PER_FRONTEND} per frontend: split the service"
            )
        if not 0 < fe.port < 65536 or any(not 0 < ep.port < 65536 for ep in eps):
            raise ValueError(f"{where}: ports must be 1..65535")
        fam = _family(fe)
        try:
            if fam == "4":
                return fam, st.fe4_key(fe), [st.ep4(ep) for ep in eps]
            return fam, st.fe6_key(fe), [st.ep6(ep) for ep in eps]
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{where}: {exc}; every endpoint must be an IPv{fam} address like its frontend"
            ) from exc

    def _stage_service(self, svc: LbService, staged: _Staged) -> None:
        old = self._services.get(svc.key)
        todo = []
        for fe, eps in svc.frontends.items():
            state = self._fe.get(fe)
            unchanged = (
                old is not None
                and state is not None
                and state.owner == svc.key
                and old.policy == svc.policy
                and old.frontends.get(fe) == eps
            )
            if not unchanged:
                todo.append((fe, state, self._encode(svc, fe, eps)))
        svc_id = self._svc_ids.get(svc.key) or self._alloc_id()
        self._svc_ids[svc.key] = svc_id
        for fe, state, (fam, key, encoded) in todo:
            if state is not None and state.owner not in (None, svc.key):
                log.warning("frontend %s moves from %s to %s", fe, state.owner, svc.key)
            self._stage_write(svc, svc_id, fe, fam, key, encoded, state, staged)
        if old is not None:
            for fe in old.frontends:
                state = self._fe.get(fe)
                if fe not in svc.frontends and state is not None and state.owner == svc.key:
                    self._stage_drop(fe, state, staged)
        self._services[svc.key] = svc

    def _stage_write(
        self,
        svc: LbService,
        svc_id: int,
        fe: Frontend,
        fam: str,
        key: ct.Structure,
        encoded: list[ct.Structure],
        state: _FeState | None,
        staged: _Staged,
    ) -> None:
        val: ct.Structure = st.Fe4Ent() if fam == "4" else st.Fe6Ent()
        val.key = key
        inline = st.INLINE4 if fam == "4" else st.INLINE6
        count = len(encoded)
        epset = self._alloc_id() if count > inline else 0
        for i, ep in enumerate(encoded[:inline]):
            val.ep[i] = ep
        for i in range(inline, count):
            staged.ep_items[fam].append((st.EpxKey(epset=epset, idx=i), encoded[i], True))
        val.hdr.svc_id = svc_id
        val.hdr.epset = epset
        val.hdr.count = count
        val.hdr.policy = st.POLICY[svc.policy]
        staged.fe_items[fam].append(val)
        if state is not None:
            self._stage_overflow_drop(fam, state, staged)
        self._fe[fe] = _FeState(svc.key, svc_id, epset, count)

    def _stage_overflow_drop(self, fam: str, state: _FeState, staged: _Staged) -> None:
        inline = st.INLINE4 if fam == "4" else st.INLINE6
        if state.epset:
            staged.ep_del[fam].extend(
                st.EpxKey(epset=state.epset, idx=i) for i in range(inline, state.count)
            )

    def _stage_drop(self, fe: Frontend, state: _FeState, staged: _Staged) -> None:
        fam = _family(fe)
        staged.fe_del[fam].append(st.fe4_key(fe) if fam == "4" else st.fe6_key(fe))
        self._stage_overflow_drop(fam, state, staged)
        del self._fe[fe]

    def _flush(self, staged: _Staged) -> None:
        # Order keeps every lookup valid: a frontend value is written only after the
        # overflow endpoints it names exist, and old entries go only once unreferenced.
        for fam in ("4", "6"):
            self.ep[fam].write(staged.ep_items[fam])
        for fam in ("4", "6"):
            self.fe[fam].write(staged.fe_items[fam])
        for fam in ("4", "6"):
            self.fe[fam].delete(staged.fe_del[fam])
            self.ep[fam].remove(staged.ep_del[fam])
        for emap in self.maps.values():
            emap.maybe_shrink()

    # -- reading -------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return _read_counters(self._fds["counters"])

    def state(self) -> dict[str, int]:
        """Sizes for metrics: services, endpoints, frontends, resizes, no_endpoint, ..."""
        with self._lock:
            out = {
                "services": len(self._services),
                "endpoints": sum(s.count for s in self._fe.values()),
                "frontends": len(self._fe),
                "adopted_frontends": sum(1 for s in self._fe.values() if s.owner is None),
                "resizes": sum(m.resizes for m in self.maps.values()),
                "capacity": sum(m.capacity for m in self.maps.values()),
            }
            for name, emap in self.maps.items():
                out[f"capacity_{name}"] = emap.capacity
                out[f"entries_{name}"] = emap.count
                out[f"shards_{name}"] = len(emap.shards)
            out.update(self.counters())
            return out


def _create_orig(struct: type[ct.Structure]) -> int:
    """An SK_STORAGE map of `struct` values (the kernel requires BTF for them; arrays of
    u32 are described as consecutive u32 members of the same size and offsets)."""
    fields = []
    for name, ctype in struct._fields_:
        offset = getattr(struct, name).offset
        n = getattr(ctype, "_length_", 1)
        fields += [(f"{name}{i}" if n > 1 else name, (offset + 4 * i) * 8) for i in range(n)]
    btf_fd, int_id, struct_id = lb.btf_struct_fd(struct.__name__, fields, ct.sizeof(struct))
    try:
        return lb.map_create(
            lb.MAP_SK_STORAGE,
            f"kmn_{struct.__name__.lower()}",
            4,
            ct.sizeof(struct),
            0,
            flags=lb.F_NO_PREALLOC,
            btf_fd=btf_fd,
            btf_key_type_id=int_id,
            btf_value_type_id=struct_id,
        )
    finally:
        os.close(btf_fd)


def _possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


COUNTER_NAMES = {
    st.CTR_NO_ENDPOINT: "no_endpoint",
    st.CTR_ACCEL_REDIRECT: "accel_redirect",
    st.CTR_ACCEL_PASS: "accel_pass",
}


def _read_counters(fd: int) -> dict[str, int]:
    out = {}
    ncpu = _possible_cpus()
    for idx, name in COUNTER_NAMES.items():
        per_cpu = (ct.c_uint64 * ncpu)()
        lb.lookup_elem(fd, ct.c_uint32(idx), per_cpu)
        out[name] = sum(per_cpu)
    return out


def _open_cgroup(cgroup: str) -> int:
    path = Path(cgroup)
    if not path.is_dir():
        raise RuntimeError(
            f"--cgroup {cgroup} is not a directory; create it with `mkdir {cgroup}` under the "
            "cgroup2 mount (/sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on pure v2)"
        )
    if _statfs_type(str(path)) != CGROUP2_SUPER_MAGIC:
        raise RuntimeError(
            f"--cgroup {cgroup} is not on a cgroup2 filesystem; eBPF attaches to cgroup v2 "
            "only: use a directory under /sys/fs/cgroup/unified (hybrid) or /sys/fs/cgroup (v2)"
        )
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def _ensure_pin_dir(bpffs: Path) -> None:
    """Create the pin directory on a bpffs, mounting /sys/fs/bpf when it is absent."""
    anchor = bpffs
    while not anchor.exists():
        anchor = anchor.parent
    if _statfs_type(str(anchor)) != BPF_FS_MAGIC:
        mount_point = Path("/sys/fs/bpf")
        if anchor == mount_point or mount_point in bpffs.parents:
            result = subprocess.run(
                ["mount", "-t", "bpf", "bpf", str(mount_point)], capture_output=True, text=True
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"{mount_point} is not a bpffs and mounting it failed "
                    f"({result.stderr.strip()}); run `mount -t bpf bpf {mount_point}` as root"
                )
            log.info("mounted bpffs at %s", mount_point)
        else:
            raise RuntimeError(
                f"--bpffs {bpffs} is not on a bpf filesystem; choose a directory under "
                "/sys/fs/bpf, or mount one with `mount -t bpf bpf DIR`"
            )
    bpffs.mkdir(parents=True, exist_ok=True)


# -- read-only inspection and removal (status / uninstall) -------------------------------
def inspect(bpffs: str) -> dict[str, Any]:
    """What is pinned under `bpffs`: version, maps with capacity/entries, links and the
    cgroup each is attached to, counts of services/endpoints/frontends. No bcc needed."""
    root = Path(bpffs)
    out: dict[str, Any] = {"bpffs": bpffs, "installed": root.is_dir(), "pins": []}
    if not root.is_dir():
        return out
    out["pins"] = sorted(p.name for p in root.iterdir())
    fds: list[int] = []
    try:
        if (root / "version").exists():
            fd = lb.obj_get(str(root / "version"))
            fds.append(fd)
            ver = st.Version()
            lb.lookup_elem(fd, ct.c_uint32(0), ver)
            out["version"] = {
                "magic": ver.magic,
                "layout": ver.layout,
                "compatible": bytes(ver) == bytes(st.expected_version()),
            }
        if not out.get("version", {}).get("compatible"):
            return out
        maps: dict[str, Any] = {}
        svc_ids: set[int] = set()
        endpoints = frontends = 0
        tables: dict[str, tuple[Any, Any]] = {
            name: (ct.c_uint32, ent) for name, (ent, _n, _h) in FRONTENDS.items()
        } | {name: (k, v) for name, (k, v, _h) in OVERFLOW.items()}
        for name, (key_t, val_t) in tables.items():
            summary = {"capacity": 0, "entries": 0, "shards": 0}
            i = 0
            while (path := root / f"{name}_inner_{i}").exists():
                fd = lb.obj_get(str(path))
                fds.append(fd)
                keys, vals = lb.lookup_all(fd, key_t, val_t)
                summary["capacity"] += lb.map_info(fd).max_entries
                summary["shards"] += 1
                if name.startswith("fe"):
                    live = [v for v in vals if v.key.proto]
                    summary["entries"] += len(live)
                    frontends += len(live)
                    for val in live:
                        svc_ids.add(val.hdr.svc_id)
                        endpoints += val.hdr.count
                else:
                    summary["entries"] += len(keys)
                i += 1
            maps[name] = summary
        out["maps"] = maps
        out["services"] = len(svc_ids)
        out["frontends"] = frontends
        out["endpoints"] = endpoints
        out["capacity"] = sum(m["capacity"] for m in maps.values())
        if (root / "counters").exists():
            fd = lb.obj_get(str(root / "counters"))
            fds.append(fd)
            out["counters"] = _read_counters(fd)
        links = {}
        for hook in HOOKS:
            path = root / f"link_{hook}"
            if path.exists():
                fd = lb.obj_get(str(path))
                fds.append(fd)
                info = lb.link_info(fd)
                links[hook] = {
                    "link_id": info.id,
                    "prog_id": info.prog_id,
                    "cgroup_id": info.cgroup_id,
                    "attached": info.cgroup_id != 0,
                }
        out["links"] = links
        out["accel"] = accel.inspect(root)
    finally:
        for fd in fds:
            os.close(fd)
    return out


def _lock_pin_dir(bpffs: Path, wait_s: float) -> int:
    """flock the pin directory: one writer (agent or benchmark) per directory at a time."""
    fd = os.open(bpffs, os.O_RDONLY | os.O_DIRECTORY)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise RuntimeError(
                    f"another kmesh-node process is using {bpffs}; stop it first (SIGTERM "
                    "leaves the datapath working), or choose another --bpffs"
                ) from None
            time.sleep(0.1)


def _detach_quietly(link_fd: int) -> None:
    try:
        lb.link_detach(link_fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOLINK, errno.EINVAL, errno.ENOENT):  # already detached
            raise


def uninstall(bpffs: str) -> list[str]:
    """Detach every pinned link, then unpin everything under `bpffs` and remove the dir.

    Returns what was removed. Safe to run twice.
    """
    root = Path(bpffs)
    removed: list[str] = []
    if not root.exists():
        return removed
    lock_fd = _lock_pin_dir(root, 0.0)  # refuse while an agent is running on it
    try:
        _remove_all(root, removed)
    finally:
        os.close(lock_fd)
    return removed


def _remove_all(root: Path, removed: list[str]) -> None:
    for path in sorted(root.glob("link_*")):
        try:
            fd = lb.obj_get(str(path))
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc)
            continue
        try:
            _detach_quietly(fd)
        finally:
            os.close(fd)
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if stat.S_ISDIR(path.lstat().st_mode):
            path.rmdir()
        else:
            path.unlink()
        removed.append(str(path.relative_to(root)))
    root.rmdir()


def uninstall_command(args: Any) -> int:
    removed = uninstall(args.bpffs)
    if not removed and not Path(args.bpffs).exists():
        print(f"nothing installed under {args.bpffs}")
    else:
        print(f"detached and unpinned {len(removed)} objects under {args.bpffs}")
    return 0
