"""Elastic eBPF hash maps whose memory follows their element count, resized without a miss.

A `ShardedMap` is an ARRAY_OF_MAPS of S slots over N BPF_F_NO_PREALLOC hash shards (N a
power of two, 1..S). Slot s holds shard s & (N - 1); a key lives in the shard of slot
`hash_of(key) & (S - 1)` (the same hash the programs compute). Why shards: a hash map's bucket array
larger than 32 KiB (2048 buckets) is vmalloc'd, and cold lookups into it pay TLB misses
(~550 ns vs ~250 ns per lookup measured here over 200 of 10k keys); small shards keep every
bucket array kmalloc'd.

Resizes never lose a lookup: new shards are built and filled completely, then slots are
re-pointed one at a time. All keys of slot s live in whichever shard slot s points to, old
or new, so each slot is consistent on its own at every moment.

Sizing: a shard's capacity (max_entries) is a power of two >= 64; a full shard doubles up to
2048, beyond which N doubles (re-shard). When the whole map falls below a quarter full, it
is rebuilt at the size its content needs. Every shard is pinned as `<name>_inner_<i>`.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from kmesh_node import libbpf as lb

log = logging.getLogger(__name__)

MIN_CAPACITY = 64
SHARD_LIMIT = 2048  # buckets of 16 B: 32 KiB, the largest bucket array kmalloc serves
TARGET_LOAD = SHARD_LIMIT // 2  # average entries per shard right after a re-shard


def pow2_at_least(n: int) -> int:
    return max(MIN_CAPACITY, 1 << max(0, (n - 1).bit_length()))


def replace_pin(fd: int, path: Path) -> None:
    """Pin `fd` at `path`, replacing an older pin without a moment where none exists."""
    tmp = path.with_name(path.name + "__new")  # bpffs names may not contain "."
    if tmp.exists():
        tmp.unlink()
    lb.obj_pin(fd, str(tmp))
    os.replace(tmp, path)


def create_outer(name: str, slots: int, template_fd: int, path: Path) -> int:
    """Create and pin an ARRAY_OF_MAPS of `slots` slots whose inner maps are shaped like
    `template_fd` (closed here: the kernel only reads its shape)."""
    try:
        fd = lb.map_create(
            lb.MAP_ARRAY_OF_MAPS, f"kmn_{name}_o", 4, 4, slots, inner_map_fd=template_fd
        )
    finally:
        os.close(template_fd)
    replace_pin(fd, path)
    return fd


def adopt_slots(outer_fd: int, slots: int) -> tuple[list[int], bool]:
    """Open the shards a pinned outer map points at; say whether the slots are regular
    (N shards, N a power of two, slot s -> shard s & (N - 1)), i.e. not caught mid-resize."""
    ids = []
    for s in range(slots):
        map_id = ct.c_uint32(0)
        ids.append(map_id.value if lb.lookup_elem(outer_fd, ct.c_uint32(s), map_id) else 0)
    distinct = list(dict.fromkeys(i for i in ids if i))
    n = len(distinct)
    regular = (
        n > 0
        and n & (n - 1) == 0
        and all(ids[s] == ids[s & (n - 1)] for s in range(slots))
        and ids[:n] == distinct
    )
    return [lb.map_fd_by_id(i) for i in distinct], regular


class _Shard:
    def __init__(self, fd: int, capacity: int, count: int) -> None:
        self.fd = fd
        self.capacity = capacity
        self.count = count


class ShardedMap:
    """One elastic map: `open()`, then `write()` / `remove()` / `maybe_shrink()`."""

    def __init__(
        self,
        name: str,
        pin_dir: Path,
        key_type: type[ct.Structure],
        val_type: type[ct.Structure],
        hash_of: Callable[[ct.Structure], int],
        slots: int,
    ) -> None:
        self.name = name
        self.pin_dir = pin_dir
        self.key_type = key_type
        self.val_type = val_type
        self.hash_of = hash_of
        self.slots = slots
        self.outer_path = pin_dir / f"{name}_outer"
        self.outer_fd = -1
        self.shards: list[_Shard] = []
        self.resizes = 0

    # -- sizes ---------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def capacity(self) -> int:
        return sum(s.capacity for s in self.shards)

    def slot_of(self, key: ct.Structure) -> int:
        return self.hash_of(key) & (self.slots - 1)

    def shard_of(self, key: ct.Structure) -> int:
        return self.hash_of(key) & (len(self.shards) - 1)

    def _inner_path(self, i: int) -> Path:
        return self.pin_dir / f"{self.name}_inner_{i}"

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        """Adopt the pinned outer map and the shards its slots hold, or create them."""
        if not self.outer_path.exists():
            self.outer_fd = create_outer(self.name, self.slots, self._new_inner(1), self.outer_path)
            self._install([(self._new_inner(MIN_CAPACITY), MIN_CAPACITY, 0)])
            return
        self.outer_fd = lb.obj_get(str(self.outer_path))
        fds, regular = adopt_slots(self.outer_fd, self.slots)
        n = len(fds)
        if regular:
            self.shards = [
                _Shard(fd, lb.map_info(fd).max_entries, len(lb.iter_keys(fd, self.key_type)))
                for fd in fds
            ]
            for i, shard in enumerate(self.shards):
                replace_pin(shard.fd, self._inner_path(i))  # a crash may have left stale pins
            self._unpin_from(n)
            return
        # A run died in the middle of a re-shard: rebuild from the union of what is there.
        log.warning("%s: slots in an interrupted resize; rebuilding from %d maps", self.name, n)
        keys, vals = self._read_all(fds)
        unique = {bytes(k): i for i, k in enumerate(keys)}  # a key may sit in old and new
        keys = [keys[i] for i in unique.values()]
        vals = [vals[i] for i in unique.values()]
        self.shards = [_Shard(fd, 0, 0) for fd in fds]
        self._reshard(keys, vals, self._shards_for(len(keys)))

    def close(self) -> None:
        for shard in self.shards:
            os.close(shard.fd)
        self.shards = []
        if self.outer_fd >= 0:
            os.close(self.outer_fd)
        self.outer_fd = -1

    def _new_inner(self, capacity: int) -> int:
        return lb.map_create(
            lb.MAP_HASH,
            f"kmn_{self.name}",
            ct.sizeof(self.key_type),
            ct.sizeof(self.val_type),
            capacity,
            flags=lb.F_NO_PREALLOC,
        )

    def _install(self, shards: list[tuple[int, int, int]]) -> None:
        """Point every slot at the new shard list (fd, capacity, count); close the old."""
        n = len(shards)
        old = self.shards
        self._point(range(self.slots), [shards[s & (n - 1)][0] for s in range(self.slots)])
        self.shards = [_Shard(fd, cap, cnt) for fd, cap, cnt in shards]
        for i, shard in enumerate(self.shards):
            replace_pin(shard.fd, self._inner_path(i))
        self._unpin_from(n)
        for shard in old:
            if all(shard.fd != s.fd for s in self.shards):
                os.close(shard.fd)

    def _point(self, slots: Sequence[int], fds: Sequence[int]) -> None:
        """Re-point slots in ONE batch: every map-in-map update from user space waits for an
        RCU grace period, paid once per batch instead of once per slot (10 ms each under
        load here)."""
        keys = (ct.c_uint32 * len(slots))(*slots)
        vals = (ct.c_uint32 * len(fds))(*fds)
        lb.update_batch(self.outer_fd, keys, vals)

    def _unpin_from(self, n: int) -> None:
        i = n
        while self._inner_path(i).exists():
            self._inner_path(i).unlink()
            i += 1

    # -- resizing ------------------------------------------------------------------------
    def _read_all(self, fds: Sequence[int]) -> tuple[ct.Array, ct.Array]:
        parts = [lb.lookup_all(fd, self.key_type, self.val_type) for fd in fds]
        total = sum(len(k) for k, _v in parts)
        keys = (self.key_type * total)()
        vals = (self.val_type * total)()
        pos = 0
        ksz, vsz = ct.sizeof(self.key_type), ct.sizeof(self.val_type)
        for k, v in parts:
            ct.memmove(ct.addressof(keys) + pos * ksz, k, len(k) * ksz)
            ct.memmove(ct.addressof(vals) + pos * vsz, v, len(v) * vsz)
            pos += len(k)
        return keys, vals

    def _shards_for(self, total: int) -> int:
        n = 1
        while n < self.slots and total + total // 4 > n * TARGET_LOAD:
            n *= 2
        return n

    def _reshard(self, keys: Sequence[ct.Structure], vals: Sequence[ct.Structure], n: int) -> None:
        groups: list[list[int]] = [[] for _ in range(n)]
        for idx, key in enumerate(keys):
            groups[self.slot_of(key) & (n - 1)].append(idx)
        built: list[tuple[int, int, int]] = []
        try:
            for members in groups:
                cap = pow2_at_least(len(members) + len(members) // 4)
                if n < self.slots:
                    cap = min(cap, max(SHARD_LIMIT, pow2_at_least(len(members))))
                fd = self._new_inner(cap)
                built.append((fd, cap, len(members)))
                self._write_fd(fd, [keys[i] for i in members], [vals[i] for i in members])
        except BaseException:
            for fd, _c, _n in built:
                os.close(fd)
            raise
        log.info(
            "resized %s: %d shards/%d capacity -> %d shards/%d capacity (%d entries)",
            self.name,
            len(self.shards),
            self.capacity,
            n,
            sum(c for _f, c, _n in built),
            len(keys),
        )
        self._install(built)
        self.resizes += 1

    def _resize_shard(self, i: int, capacity: int) -> None:
        shard = self.shards[i]
        keys, vals = lb.lookup_all(shard.fd, self.key_type, self.val_type)
        fd = self._new_inner(capacity)
        try:
            lb.update_batch(fd, keys, vals)
        except BaseException:
            os.close(fd)
            raise
        slots = range(i, self.slots, len(self.shards))  # the slots s with s & (n - 1) == i
        self._point(slots, [fd] * len(slots))
        replace_pin(fd, self._inner_path(i))
        os.close(shard.fd)
        self.shards[i] = _Shard(fd, capacity, len(keys))
        self.resizes += 1

    def _write_fd(self, fd: int, keys: list[ct.Structure], vals: list[ct.Structure]) -> None:
        if keys:
            lb.update_batch(
                fd, (self.key_type * len(keys))(*keys), (self.val_type * len(vals))(*vals)
            )

    # -- content -------------------------------------------------------------------------
    def write(self, items: Sequence[tuple[ct.Structure, ct.Structure, bool]]) -> None:
        """Write (key, value, is_new) items, growing shards first where they would overflow."""
        if not items:
            return
        slots = [self.hash_of(key) for key, _val, _new in items]  # hashed once per write
        while True:
            n = len(self.shards)
            new_per_shard = [0] * n
            for slot, (_key, _val, is_new) in zip(slots, items, strict=True):
                if is_new:
                    new_per_shard[slot & (n - 1)] += 1
            overflow = [
                i for i, sh in enumerate(self.shards) if sh.count + new_per_shard[i] > sh.capacity
            ]
            if n == self.slots or all(
                self.shards[i].count + new_per_shard[i] <= SHARD_LIMIT for i in overflow
            ):
                break
            keys, vals = self._read_all([s.fd for s in self.shards])
            total = len(keys) + sum(new_per_shard)
            self._reshard(keys, vals, max(n * 2, self._shards_for(total)))
        for i in overflow:
            need = self.shards[i].count + new_per_shard[i]
            cap = pow2_at_least(need + need // 4)
            if n < self.slots:
                cap = min(cap, SHARD_LIMIT)
            self._resize_shard(i, cap)
        groups: list[list[int]] = [[] for _ in range(n)]
        for idx, slot in enumerate(slots):
            groups[slot & (n - 1)].append(idx)
        for i, members in enumerate(groups):
            if members:
                self._write_fd(
                    self.shards[i].fd,
                    [items[m][0] for m in members],
                    [items[m][1] for m in members],
                )
                self.shards[i].count += new_per_shard[i]

    def remove(self, keys: Sequence[ct.Structure]) -> None:
        groups: list[list[ct.Structure]] = [[] for _ in self.shards]
        for key in keys:
            groups[self.shard_of(key)].append(key)
        for shard, members in zip(self.shards, groups, strict=True):
            if not members:
                continue
            try:
                lb.delete_batch(shard.fd, (self.key_type * len(members))(*members))
                shard.count -= len(members)
            except OSError:
                # A key was already gone (the batch stops there): finish one by one.
                for key in members:
                    with contextlib.suppress(OSError):
                        lb.delete_elem(shard.fd, key)
                shard.count = len(lb.iter_keys(shard.fd, self.key_type))

    def maybe_shrink(self) -> None:
        """Rebuild at the needed size once the map is less than a quarter full."""
        if self.capacity > MIN_CAPACITY and self.count < self.capacity // 4:
            keys, vals = self._read_all([s.fd for s in self.shards])
            n = self._shards_for(len(keys))
            if n == len(self.shards) == 1:
                self._resize_shard(0, pow2_at_least(len(keys) * 2))
            else:
                self._reshard(keys, vals, n)

    def items(self) -> tuple[ct.Array, ct.Array]:
        return self._read_all([s.fd for s in self.shards])
