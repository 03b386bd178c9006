"""ShardedMap's resize logic against an in-memory fake of the kernel maps (no root).

The fake applies a batch of slot updates one element at a time, like the kernel, and after
every single slot change checks that EVERY key stored so far is still found through the slot
the programs would use: the "no lost lookup during a resize" property, step by step.
"""

from __future__ import annotations

import ctypes as ct
import errno
import itertools
from pathlib import Path
from typing import Any

import pytest

from kmesh_node import libbpf as lb
from kmesh_node import shardmap
from kmesh_node import structs as st
from kmesh_node.model import Frontend


def _raw(x: Any) -> bytes:
    # items of a c_uint32 array come out as ints, of a struct array as structs
    return x.to_bytes(4, "little") if isinstance(x, int) else bytes(x)


class FakeKernel:
    def __init__(self, pin_dir: Path) -> None:
        self.maps: dict[int, dict[str, Any]] = {}
        self.ids = itertools.count(1)
        self.fds = itertools.count(100)
        self.pins: dict[str, int] = {}
        self.live: dict[int, set[bytes]] = {}  # slot -> keys a lookup must find at any moment
        self.slot_of: Any = lambda k: hash16(k) & (st.FE_SLOTS - 1)
        self.outer_fd = -1
        self.checks = 0
        self.pin_dir = pin_dir

    # map objects are addressed by fd; ids are what outer slots hold
    def map_create(
        self, map_type: int, name: str, ksz: int, vsz: int, max_entries: int, **kw: Any
    ) -> int:
        fd = next(self.fds)
        self.maps[fd] = {"type": map_type, "max": max_entries, "data": {}, "id": next(self.ids)}
        if map_type == lb.MAP_ARRAY_OF_MAPS:
            self.outer_fd = fd
        return fd

    def _by_id(self, map_id: int) -> dict[str, Any]:
        return next(m for m in self.maps.values() if m["id"] == map_id)

    def _set(self, fd: int, key: bytes, value: bytes) -> None:
        m = self.maps[fd]
        if m["type"] == lb.MAP_ARRAY_OF_MAPS:
            value = self.maps[int.from_bytes(value, "little")]["id"].to_bytes(4, "little")
            m["data"][key] = value
            self.check(int.from_bytes(key, "little"))
            return
        if key not in m["data"] and len(m["data"]) >= m["max"]:
            raise OSError(errno.E2BIG, "map full")
        m["data"][key] = value

    def add_live(self, keys: Any) -> None:
        for k in keys:
            self.live.setdefault(self.slot_of(k), set()).add(bytes(k))

    def drop_live(self, keys: Any) -> None:
        for k in keys:
            self.live[self.slot_of(k)].discard(bytes(k))

    def check(self, slot: int | None = None) -> None:
        """Every live key (of `slot`, or all) is found through its slot, as the programs
        look it up."""
        outer = self.maps[self.outer_fd]["data"]
        for s in self.live if slot is None else [slot]:
            inner = self._by_id(int.from_bytes(outer[s.to_bytes(4, "little")], "little"))
            missing = self.live.get(s, set()) - inner["data"].keys()
            assert not missing, "a lookup would miss during a resize"
        self.checks += 1

    def update_elem(self, fd: int, key: Any, value: Any, flags: int = 0) -> None:
        self._set(fd, bytes(key), bytes(value))

    def update_batch(self, fd: int, keys: ct.Array, values: ct.Array) -> None:
        # one element at a time, like the kernel's generic batch update
        for k, v in zip(keys, values, strict=True):
            self._set(fd, _raw(k), _raw(v))

    def lookup_elem(self, fd: int, key: Any, value: Any) -> bool:
        raw = self.maps[fd]["data"].get(bytes(key))
        if raw is None:
            return False
        ct.memmove(ct.addressof(value), raw, len(raw))
        return True

    def delete_batch(self, fd: int, keys: ct.Array) -> None:
        for k in keys:
            del self.maps[fd]["data"][_raw(k)]

    def delete_elem(self, fd: int, key: Any) -> bool:
        return self.maps[fd]["data"].pop(bytes(key), None) is not None

    def lookup_all(self, fd: int, key_t: Any, val_t: Any) -> tuple[Any, Any]:
        data = self.maps[fd]["data"]
        keys = (key_t * len(data))(*(key_t.from_buffer_copy(k) for k in data))
        vals = (val_t * len(data))(*(val_t.from_buffer_copy(v) for v in data.values()))
        return keys, vals

    def iter_keys(self, fd: int, key_t: Any) -> list[Any]:
        return [key_t.from_buffer_copy(k) for k in self.maps[fd]["data"]]

    def obj_pin(self, fd: int, path: str) -> None:
        Path(path).write_text(str(fd))

    def obj_get(self, path: str) -> int:
        return int(Path(path).read_text())

    def map_fd_by_id(self, map_id: int) -> int:
        return next(fd for fd, m in self.maps.items() if m["id"] == map_id)

    def map_info(self, fd: int) -> Any:
        return lb.MapInfo(max_entries=self.maps[fd]["max"], id=self.maps[fd]["id"])


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel(tmp_path)
    for name in (
        "map_create",
        "update_elem",
        "update_batch",
        "lookup_elem",
        "delete_batch",
        "delete_elem",
        "lookup_all",
        "iter_keys",
        "obj_pin",
        "obj_get",
        "map_fd_by_id",
        "map_info",
    ):
        monkeypatch.setattr(lb, name, getattr(fake, name))
    monkeypatch.setattr(shardmap.os, "close", lambda fd: None)
    return fake


def hash16(key: ct.Structure) -> int:
    return st.hash_fe4(key) >> 16


def new_map(pin_dir: Path) -> shardmap.ShardedMap:
    return shardmap.ShardedMap("fe4", pin_dir, st.Fe4Key, st.Ep4, hash16, st.FE_SLOTS)


def key(i: int) -> st.Fe4Key:
    return st.fe4_key(Frontend(f"10.{96 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}", 80))


def items(rng: range) -> list[tuple[ct.Structure, ct.Structure, bool]]:
    return [(key(i), st.Ep4(), True) for i in rng]


def invariants(m: shardmap.ShardedMap, kernel: FakeKernel) -> None:
    n = len(m.shards)
    assert n & (n - 1) == 0 and n <= m.slots
    for shard in m.shards:
        data = kernel.maps[shard.fd]["data"]
        assert shard.count == len(data) <= shard.capacity
        assert shard.capacity <= shardmap.SHARD_LIMIT or n == m.slots
    assert sorted(p.name for p in kernel.pin_dir.glob("fe4_inner_*")) == sorted(
        f"fe4_inner_{i}" for i in range(n)
    )
    kernel.check()


def test_grows_reshards_and_shrinks_without_a_missed_lookup(
    kernel: FakeKernel, tmp_path: Path
) -> None:
    m = new_map(tmp_path)
    m.open()
    assert (len(m.shards), m.capacity) == (1, shardmap.MIN_CAPACITY)
    for lo, hi in ((0, 50), (50, 3_000), (3_000, 12_000)):
        batch = items(range(lo, hi))
        m.write(batch)
        kernel.add_live(k for k, _v, _n in batch)
        invariants(m, kernel)
    assert m.count == 12_000 and len(m.shards) >= 8 and m.resizes >= 3
    big = m.capacity
    gone = [key(i) for i in range(100, 12_000)]
    kernel.drop_live(gone)
    m.remove(gone)
    m.maybe_shrink()
    invariants(m, kernel)
    assert m.count == 100 and m.capacity < big // 16
    assert kernel.checks > 500  # every slot update along the way was checked


def test_adopts_pinned_shards(kernel: FakeKernel, tmp_path: Path) -> None:
    m = new_map(tmp_path)
    m.open()
    m.write(items(range(5_000)))
    again = new_map(tmp_path)
    again.open()
    assert [s.fd for s in again.shards] == [s.fd for s in m.shards]
    assert again.count == 5_000


def test_rebuilds_an_interrupted_reshard(kernel: FakeKernel, tmp_path: Path) -> None:
    m = new_map(tmp_path)
    m.open()
    m.write(items(range(3_000)))
    kernel.add_live(key(i) for i in range(3_000))
    # simulate a crash half way through re-pointing slots to a new shard set
    n = len(m.shards)
    keys, vals = m.items()
    new = []
    for i in range(n * 2):
        fd = lb.map_create(lb.MAP_HASH, "x", 8, ct.sizeof(st.Ep4), 4096)
        members = [(k, v) for k, v in zip(keys, vals, strict=True) if hash16(k) & (2 * n - 1) == i]
        for k, v in members:
            lb.update_elem(fd, k, v)
        new.append(fd)
    for s in range(st.FE_SLOTS // 2):
        lb.update_elem(m.outer_fd, ct.c_uint32(s), ct.c_uint32(new[s & (2 * n - 1)]))
    again = new_map(tmp_path)
    again.open()
    assert again.count == 3_000
    invariants(again, kernel)
