"""Ask the kernel what BPF objects are pinned under a bpffs directory, and what they cost.

Read-only inspection through the bpf(2) syscall (via ctypes) and /proc/self/fdinfo, so that
`top`, the metrics endpoint and the benchmark need neither bcc nor bpftool: each pin is
opened with BPF_OBJ_GET, its fdinfo says whether it is a program, a map or a link, and
gives memlock, run_time_ns and run_cnt. Map entries are counted by walking the map (batch
lookups where the kernel supports them); *_OF_MAPS maps are followed into their inner maps,
which are the memory that Inspektor Gadget cannot see (seed 002).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field

# bpf(2) commands (enum bpf_cmd in linux/bpf.h; stable uapi numbering)
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_GET = 7
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_LINK_GET_FD_BY_ID = 30
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0

_SYSCALL_NR = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

MAP_TYPES = [
    "unspec",
    "hash",
    "array",
    "prog_array",
    "perf_event_array",
    "percpu_hash",
    "percpu_array",
    "stack_trace",
    "cgroup_array",
    "lru_hash",
    "lru_percpu_hash",
    "lpm_trie",
    "array_of_maps",
    "hash_of_maps",
    "devmap",
    "sockmap",
    "cpumap",
    "xskmap",
    "sockhash",
    "cgroup_storage",
    "reuseport_sockarray",
    "percpu_cgroup_storage",
    "queue",
    "stack",
    "sk_storage",
    "devmap_hash",
    "struct_ops",
    "ringbuf",
    "inode_storage",
    "task_storage",
    "bloom_filter",
    "user_ringbuf",
    "cgrp_storage",
    "arena",
]
PROG_TYPES = [
    "unspec",
    "socket_filter",
    "kprobe",
    "sched_cls",
    "sched_act",
    "tracepoint",
    "xdp",
    "perf_event",
    "cgroup_skb",
    "cgroup_sock",
    "lwt_in",
    "lwt_out",
    "lwt_xmit",
    "sock_ops",
    "sk_skb",
    "cgroup_device",
    "sk_msg",
    "raw_tracepoint",
    "cgroup_sock_addr",
    "lwt_seg6local",
    "lirc_mode2",
    "sk_reuseport",
    "flow_dissector",
    "cgroup_sysctl",
    "raw_tracepoint_writable",
    "cgroup_sockopt",
    "tracing",
    "struct_ops",
    "ext",
    "lsm",
    "sk_lookup",
    "syscall",
    "netfilter",
]

# Maps whose slots hold other maps: their own memlock covers only the slots (~8 B each).
MAP_IN_MAP_TYPES = frozenset({"array_of_maps", "hash_of_maps"})
# Every slot of these exists from creation: "entries" is max_entries.
PREALLOCATED_ARRAY_TYPES = frozenset({"array", "percpu_array"})
# IS_FD_MAP() in the kernel: a syscall lookup writes a u32 object id.
KERNEL_FD_MAP_TYPES = frozenset(
    {"prog_array", "perf_event_array", "cgroup_array", "array_of_maps", "hash_of_maps"}
)
# Maps that cannot be walked from user space (or where a walk means nothing).
UNCOUNTABLE_TYPES = frozenset(
    {
        "perf_event_array",
        "ringbuf",
        "user_ringbuf",
        "queue",
        "stack",
        "sk_storage",
        "inode_storage",
        "task_storage",
        "cgrp_storage",
        "cgroup_storage",
        "percpu_cgroup_storage",
        "bloom_filter",
        "struct_ops",
        "arena",
        "reuseport_sockarray",
        "stack_trace",
    }
)
PERCPU_TYPES = frozenset({"percpu_hash", "percpu_array", "lru_percpu_hash"})

_BATCH = 4096  # keys per BPF_MAP_LOOKUP_BATCH call


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


_LIBC = _libc()


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """Call bpf(2); return its result or raise OSError with the kernel's errno."""
    nr = _SYSCALL_NR.get(platform.machine())
    if nr is None:
        raise RuntimeError(
            f"bpf(2) syscall number unknown for {platform.machine()}: add it to _SYSCALL_NR"
        )
    ret = _LIBC.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf(cmd={cmd}): {os.strerror(err)}")
    return int(ret)


def _attr() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(128)


def _put(attr: ctypes.Array[ctypes.c_char], offset: int, fmt: type, value: int) -> None:
    fmt.from_buffer(attr, offset).value = value  # type: ignore[attr-defined]


def obj_get(path: str) -> int:
    """Open a pinned object (BPF_OBJ_GET); return a new fd the caller closes."""
    attr = _attr()
    cpath = ctypes.create_string_buffer(os.fsencode(path))
    _put(attr, 0, ctypes.c_uint64, ctypes.addressof(cpath))
    return bpf(BPF_OBJ_GET, attr)


def fd_by_id(kind: str, obj_id: int) -> int:
    """Open a program, map or link by its kernel id; return a new fd the caller closes."""
    cmd = {
        "prog": BPF_PROG_GET_FD_BY_ID,
        "map": BPF_MAP_GET_FD_BY_ID,
        "link": BPF_LINK_GET_FD_BY_ID,
    }[kind]
    attr = _attr()
    _put(attr, 0, ctypes.c_uint32, obj_id)
    return bpf(cmd, attr)


def enable_stats() -> int:
    """BPF_ENABLE_STATS(run time): run-time stats stay on while the returned fd is open."""
    attr = _attr()
    _put(attr, 0, ctypes.c_uint32, BPF_STATS_RUN_TIME)
    return bpf(BPF_ENABLE_STATS, attr)


def parse_fdinfo(text: str) -> dict[str, str]:
    """/proc/PID/fdinfo/FD as a dict ("key:\\tvalue" lines)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def read_fdinfo(fd: int) -> dict[str, str]:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return parse_fdinfo(f.read())


def kind_of(fdinfo: dict[str, str]) -> str:
    """'prog', 'map', 'link' or 'other' (e.g. a BTF object), from fdinfo keys."""
    if "prog_id" in fdinfo and "link_id" not in fdinfo:
        return "prog"
    if "map_id" in fdinfo:
        return "map"
    if "link_id" in fdinfo:
        return "link"
    return "other"


def _type_name(table: list[str], number: int) -> str:
    return table[number] if 0 <= number < len(table) else f"type_{number}"


def _name_from_info(fd: int, info_len: int, name_offset: int) -> tuple[bytes, bytes]:
    """BPF_OBJ_GET_INFO_BY_FD with a short info struct; return (raw info, 16-byte name)."""
    info = ctypes.create_string_buffer(info_len)
    attr = _attr()
    _put(attr, 0, ctypes.c_uint32, fd)
    _put(attr, 4, ctypes.c_uint32, info_len)
    _put(attr, 8, ctypes.c_uint64, ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return info.raw, info.raw[name_offset : name_offset + 16].split(b"\0", 1)[0]


def map_name(fd: int) -> str:
    # struct bpf_map_info prefix: type, id, key_size, value_size, max_entries, map_flags,
    # name[16] at offset 24.
    return _name_from_info(fd, 40, 24)[1].decode(errors="replace")


def prog_name_and_maps(fd: int) -> tuple[str, list[int]]:
    """Name and referenced map ids of a program (struct bpf_prog_info prefix, 80 bytes)."""
    raw, name = _name_from_info(fd, 80, 64)
    nr_map_ids = int.from_bytes(raw[52:56], "little")
    if not nr_map_ids:
        return name.decode(errors="replace"), []
    ids = (ctypes.c_uint32 * nr_map_ids)()
    info = ctypes.create_string_buffer(80)
    ctypes.c_uint32.from_buffer(info, 52).value = nr_map_ids
    ctypes.c_uint64.from_buffer(info, 56).value = ctypes.addressof(ids)
    attr = _attr()
    _put(attr, 0, ctypes.c_uint32, fd)
    _put(attr, 4, ctypes.c_uint32, 80)
    _put(attr, 8, ctypes.c_uint64, ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    # the program may reference fewer maps than the first call said (never more: immutable)
    count = min(nr_map_ids, ctypes.c_uint32.from_buffer(info, 52).value)
    return name.decode(errors="replace"), list(ids[:count])


def possible_cpus() -> int:
    """Number of possible CPUs (per-CPU map values are sized by it, not by online CPUs)."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def _value_buf_size(type_name: str, value_size: int) -> int:
    if type_name in PERCPU_TYPES:
        return ((value_size + 7) // 8 * 8) * possible_cpus()
    if type_name in KERNEL_FD_MAP_TYPES:
        return 4  # the kernel hands back the held object's id (u32), whatever value_size
    return value_size


def _walk_batch(fd: int, key_size: int, value_size: int) -> Iterator[tuple[int, bytes, bytes]]:
    """BPF_MAP_LOOKUP_BATCH: yield (count, keys, values) per batch of up to _BATCH entries."""
    keys = ctypes.create_string_buffer(key_size * _BATCH)
    values = ctypes.create_string_buffer(value_size * _BATCH)
    out_batch = ctypes.create_string_buffer(max(key_size, 8))
    in_batch = ctypes.create_string_buffer(max(key_size, 8))
    first = True
    while True:
        attr = _attr()
        _put(attr, 0, ctypes.c_uint64, 0 if first else ctypes.addressof(in_batch))
        _put(attr, 8, ctypes.c_uint64, ctypes.addressof(out_batch))
        _put(attr, 16, ctypes.c_uint64, ctypes.addressof(keys))
        _put(attr, 24, ctypes.c_uint64, ctypes.addressof(values))
        _put(attr, 32, ctypes.c_uint32, _BATCH)
        _put(attr, 36, ctypes.c_uint32, fd)
        done = False
        try:
            bpf(BPF_MAP_LOOKUP_BATCH, attr)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT = last batch (count says how many)
                raise
            done = True
        count = ctypes.c_uint32.from_buffer(attr, 32).value
        if count:
            yield count, keys.raw[: count * key_size], values.raw[: count * value_size]
        if done or count == 0:
            return
        ctypes.memmove(in_batch, out_batch, len(out_batch))
        first = False


def lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """One BPF_MAP_LOOKUP_ELEM; None when the key is absent."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value_size)
    attr = _attr()
    _put(attr, 0, ctypes.c_uint32, fd)
    _put(attr, 8, ctypes.c_uint64, ctypes.addressof(kbuf))
    _put(attr, 16, ctypes.c_uint64, ctypes.addressof(vbuf))
    try:
        bpf(BPF_MAP_LOOKUP_ELEM, attr)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return vbuf.raw


def inner_map_ids(fd: int, type_name: str = "array_of_maps") -> set[int]:
    """Distinct ids of the maps held by a map-in-map (several slots may share one)."""
    return {
        int.from_bytes(value[:4], "little")
        for _key, value in walk_map(fd, type_name, 4, 4)
        if value is not None
    }


def _walk_keys(fd: int, key_size: int, value_size: int) -> Iterator[tuple[bytes, bytes | None]]:
    """GET_NEXT_KEY + LOOKUP: the portable walk; value None where the slot is empty."""
    key = ctypes.create_string_buffer(key_size)
    next_key = ctypes.create_string_buffer(key_size)
    value = ctypes.create_string_buffer(value_size)
    first = True
    while True:
        attr = _attr()
        _put(attr, 0, ctypes.c_uint32, fd)
        _put(attr, 8, ctypes.c_uint64, 0 if first else ctypes.addressof(key))
        _put(attr, 16, ctypes.c_uint64, ctypes.addressof(next_key))
        try:
            bpf(BPF_MAP_GET_NEXT_KEY, attr)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
        first = False
        ctypes.memmove(key, next_key, key_size)
        attr = _attr()
        _put(attr, 0, ctypes.c_uint32, fd)
        _put(attr, 8, ctypes.c_uint64, ctypes.addressof(key))
        _put(attr, 16, ctypes.c_uint64, ctypes.addressof(value))
        try:
            bpf(BPF_MAP_LOOKUP_ELEM, attr)
        except OSError as exc:
            # ENOENT: empty fd slot or deleted meanwhile; EOPNOTSUPP/ENOSPC: a sockmap whose
            # values cannot be read back, the key still exists.
            if exc.errno == errno.ENOENT:
                continue
            yield key.raw, None
            continue
        yield key.raw, value.raw


def _no_batch(exc: OSError) -> bool:
    # EINVAL/ENOTSUPP(524)/EOPNOTSUPP: this map type has no batch ops; walk key by key
    return exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, 524)


def walk_map(
    fd: int, type_name: str, key_size: int, value_size: int
) -> Iterator[tuple[bytes, bytes | None]]:
    """Every (key, value) of a map; for fd maps the value is the held object's id."""
    vsize = _value_buf_size(type_name, value_size)
    try:
        for count, keys, values in _walk_batch(fd, key_size, vsize):
            for i in range(count):
                yield (
                    keys[i * key_size : (i + 1) * key_size],
                    values[i * vsize : (i + 1) * vsize],
                )
        return
    except OSError as exc:
        if not _no_batch(exc):
            raise
    yield from _walk_keys(fd, key_size, vsize)


def entry_count(fd: int, type_name: str, key_size: int, value_size: int) -> int:
    """Number of entries, without materialising them (batch counts where supported)."""
    vsize = _value_buf_size(type_name, value_size)
    try:
        return sum(count for count, _k, _v in _walk_batch(fd, key_size, vsize))
    except OSError as exc:
        if not _no_batch(exc):
            raise
    return sum(1 for _ in _walk_keys(fd, key_size, vsize))


@dataclass
class MapInfo:
    """One map as the kernel reports it."""

    id: int
    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    memlock_bytes: int
    entries: int | None  # None where the map cannot be walked
    pins: list[str] = field(default_factory=list)
    inner_of: int | None = None  # id of the outer map when this is an inner map
    inner_map_ids: list[int] = field(default_factory=list)
    prog_ids: list[int] = field(default_factory=list)  # programs held (prog_array)


@dataclass
class ProgInfo:
    """One program as the kernel reports it; run stats are cumulative since load."""

    id: int
    name: str
    type: str
    memlock_bytes: int
    run_time_ns: int
    run_cnt: int
    map_ids: list[int] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    link_ids: list[int] = field(default_factory=list)


def prog_run_stats(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of an open program fd; absent fields (never run) count as 0."""
    info = read_fdinfo(fd)
    return int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0))


def map_from_fd(fd: int, count_entries: bool = True) -> MapInfo:
    info = read_fdinfo(fd)
    type_name = _type_name(MAP_TYPES, int(info.get("map_type", 0)))
    m = MapInfo(
        id=int(info["map_id"]),
        name=map_name(fd),
        type=type_name,
        key_size=int(info.get("key_size", 0)),
        value_size=int(info.get("value_size", 0)),
        max_entries=int(info.get("max_entries", 0)),
        flags=int(info.get("map_flags", "0"), 16) if "map_flags" in info else 0,
        memlock_bytes=int(info.get("memlock", 0)),
        entries=None,
    )
    if not count_entries or type_name in UNCOUNTABLE_TYPES:
        return m
    if type_name in PREALLOCATED_ARRAY_TYPES:
        m.entries = m.max_entries
        return m
    if type_name not in MAP_IN_MAP_TYPES and type_name != "prog_array":
        m.entries = entry_count(fd, type_name, m.key_size, m.value_size)
        return m
    count = 0
    for _key, value in walk_map(fd, type_name, m.key_size, m.value_size):
        count += 1
        if value is None:
            continue
        if type_name in MAP_IN_MAP_TYPES:
            m.inner_map_ids.append(int.from_bytes(value[:4], "little"))
        elif type_name == "prog_array":
            m.prog_ids.append(int.from_bytes(value[:4], "little"))
    m.entries = count
    return m


def prog_from_fd(fd: int) -> ProgInfo:
    info = read_fdinfo(fd)
    name, map_ids = prog_name_and_maps(fd)
    run_time_ns, run_cnt = prog_run_stats(fd)
    return ProgInfo(
        id=int(info["prog_id"]),
        name=name,
        type=_type_name(PROG_TYPES, int(info.get("prog_type", 0))),
        memlock_bytes=int(info.get("memlock", 0)),
        run_time_ns=run_time_ns,
        run_cnt=run_cnt,
        map_ids=map_ids,
    )


def list_pins(bpffs: str) -> list[str]:
    """Every pinned file under `bpffs` (recursively), sorted."""
    if not os.path.isdir(bpffs):
        raise RuntimeError(
            f"{bpffs} does not exist: nothing is pinned there. Start the agent "
            "(kmesh-node run ...) or pass the --bpffs it uses"
        )
    pins: list[str] = []
    for root, _dirs, files in os.walk(bpffs):
        pins.extend(os.path.join(root, f) for f in files)
    return sorted(pins)


@dataclass
class Inventory:
    """Everything reachable from the pins: programs, maps (inner and referenced included)."""

    progs: dict[int, ProgInfo] = field(default_factory=dict)
    maps: dict[int, MapInfo] = field(default_factory=dict)
    prog_fds: dict[int, int] = field(default_factory=dict)  # kept open for run-stat sampling

    def close(self) -> None:
        for fd in self.prog_fds.values():
            os.close(fd)
        self.prog_fds.clear()


def discover(bpffs: str, count_entries: bool = True) -> Inventory:
    """Walk the pins and follow links, fd maps and program map references.

    Programs' fds stay open in the returned Inventory (call .close()), so that run stats
    can be sampled again cheaply and the program cannot vanish between two samples.
    """
    inv = Inventory()
    prog_pins: dict[int, list[str]] = {}
    prog_links: dict[int, list[int]] = {}
    map_pins: dict[int, list[str]] = {}
    pending_maps: list[int] = []
    pending_progs: list[int] = []
    for path in list_pins(bpffs):
        try:
            fd = obj_get(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # unpinned while we walked
                continue
            raise RuntimeError(
                f"cannot open pinned object {path}: {exc.strerror}; run as root "
                "(CAP_BPF + CAP_SYS_ADMIN) on a host with bpffs mounted"
            ) from exc
        try:
            info = read_fdinfo(fd)
            kind = kind_of(info)
            if kind == "map":
                map_pins.setdefault(int(info["map_id"]), []).append(path)
            elif kind == "prog":
                pid = int(info["prog_id"])
                prog_pins.setdefault(pid, []).append(path)
            elif kind == "link":
                pid = int(info.get("prog_id", 0))
                if pid:
                    prog_links.setdefault(pid, []).append(int(info["link_id"]))
                    prog_pins.setdefault(pid, [])
        finally:
            os.close(fd)
    pending_maps.extend(map_pins)
    pending_progs.extend(prog_pins)
    while pending_maps or pending_progs:
        while pending_progs:
            pid = pending_progs.pop()
            if pid in inv.progs:
                continue
            try:
                fd = fd_by_id("prog", pid)
            except OSError:
                continue  # unloaded meanwhile
            p = prog_from_fd(fd)
            p.pins = prog_pins.get(pid, [])
            p.link_ids = prog_links.get(pid, [])
            inv.progs[pid] = p
            inv.prog_fds[pid] = fd
            pending_maps.extend(p.map_ids)
        while pending_maps:
            mid = pending_maps.pop()
            if mid in inv.maps:
                continue
            try:
                fd = fd_by_id("map", mid)
            except OSError:
                continue
            try:
                m = map_from_fd(fd, count_entries)
            finally:
                os.close(fd)
            m.pins = map_pins.get(mid, [])
            inv.maps[mid] = m
            pending_maps.extend(m.inner_map_ids)
            pending_progs.extend(m.prog_ids)
    # set after the walk: an inner map may also be pinned, and be reached before its outer
    for m in list(inv.maps.values()):
        for inner in m.inner_map_ids:
            if inner in inv.maps:
                inv.maps[inner].inner_of = m.id
    return inv
