"""FeTable (open-addressed ARRAY frontend shards) against an in-memory fake kernel, no root.

After EVERY single map write the fake runs the program's lookup (the Python twin of
kmn_find4 in bpf/sock_addr.c) for every frontend the test expects, and checks it finds an
entry whose value is one of the complete versions that frontend may have at that moment
(old or new): no lost lookup, no torn entry, through inserts, updates, deletes and resizes.
"""

from __future__ import annotations

import ctypes as ct
import itertools
from pathlib import Path
from typing import Any

import pytest

from kmesh_node import fetable
from kmesh_node import libbpf as lb
from kmesh_node import structs as st
from kmesh_node.model import Frontend

# a smaller shard than the real one (same code path): the test grows it with fewer keys
ENTRIES_BITS = 8
ENTRIES = 1 << ENTRIES_BITS


def _raw(x: Any) -> bytes:
    return x.to_bytes(4, "little") if isinstance(x, int) else bytes(x)


class FakeKernel:
    def __init__(self) -> None:
        self.maps: dict[int, dict[str, Any]] = {}
        self.ids = itertools.count(1)
        self.fds = itertools.count(100)
        self.outer_fd = -1
        # identity -> set of acceptable svc_id values right now (old and/or new version)
        self.expect: dict[bytes, set[int]] = {}
        self.checks = 0

    def map_create(self, map_type: int, name: str, ksz: int, vsz: int, n: int, **kw: Any) -> int:
        fd = next(self.fds)
        data = {} if map_type == lb.MAP_ARRAY_OF_MAPS else {i: bytes(vsz) for i in range(n)}
        self.maps[fd] = {"type": map_type, "n": n, "data": data, "id": next(self.ids)}
        if map_type == lb.MAP_ARRAY_OF_MAPS:
            self.outer_fd = fd
        return fd

    def _set(self, fd: int, key: bytes, value: bytes) -> None:
        m = self.maps[fd]
        if m["type"] == lb.MAP_ARRAY_OF_MAPS:
            value = self.maps[int.from_bytes(value, "little")]["id"].to_bytes(4, "little")
        m["data"][int.from_bytes(key, "little")] = value
        self.check()

    def _shard_by_id(self, map_id: int) -> dict[int, bytes]:
        return next(m["data"] for m in self.maps.values() if m["id"] == map_id)

    def find(self, key: st.Fe4Key) -> st.Fe4Ent | None:
        """kmn_find4, in Python."""
        h = st.hash_fe4(key)
        slot = h >> (32 - st.FE_SLOTS_BITS)
        shard = self._shard_by_id(int.from_bytes(self.maps[self.outer_fd]["data"][slot], "little"))
        home = h >> (32 - st.FE_SLOTS_BITS - ENTRIES_BITS)
        for p in range(st.PROBES):
            e = st.Fe4Ent.from_buffer_copy(shard[(home + p) & (ENTRIES - 1)])
            if not e.key.used:
                return None
            if (e.key.addr, e.key.port, e.key.proto) == (key.addr, key.port, key.proto):
                return e
        return None

    def check(self) -> None:
        if self.outer_fd < 0 or len(self.maps[self.outer_fd]["data"]) < st.FE_SLOTS:
            return  # the table is being created
        for ident, svc_ids in self.expect.items():
            e = self.find(st.Fe4Key.from_buffer_copy(ident + b"\x00"))
            assert e is not None, "a lookup would miss"
            assert e.hdr.svc_id in svc_ids, "a lookup would see a wrong version"
            assert e.hdr.count == e.hdr.svc_id % 5 + 1, "a torn entry"
        self.checks += 1

    def update_elem(self, fd: int, key: Any, value: Any, flags: int = 0) -> None:
        self._set(fd, bytes(key), bytes(value))

    def update_batch(self, fd: int, keys: ct.Array, values: ct.Array) -> None:
        for k, v in zip(keys, values, strict=True):
            self._set(fd, _raw(k), _raw(v))

    def lookup_elem(self, fd: int, key: Any, value: Any) -> bool:
        m = self.maps[fd]
        raw = m["data"].get(int.from_bytes(bytes(key), "little"))
        if m["type"] == lb.MAP_ARRAY_OF_MAPS and raw is None:
            return False
        ct.memmove(ct.addressof(value), raw, len(raw))
        return True

    def lookup_all(self, fd: int, key_t: Any, val_t: Any, chunk: int = 0) -> tuple[Any, Any]:
        data = self.maps[fd]["data"]
        keys = (key_t * len(data))(*data)
        vals = (val_t * len(data))(*(val_t.from_buffer_copy(v) for v in data.values()))
        return keys, vals

    def obj_pin(self, fd: int, path: str) -> None:
        Path(path).write_text(str(fd))

    def obj_get(self, path: str) -> int:
        return int(Path(path).read_text())

    def map_fd_by_id(self, map_id: int) -> int:
        return next(fd for fd, m in self.maps.items() if m["id"] == map_id)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel()
    for name in (
        "map_create",
        "update_elem",
        "update_batch",
        "lookup_elem",
        "lookup_all",
        "obj_pin",
        "obj_get",
        "map_fd_by_id",
    ):
        monkeypatch.setattr(lb, name, getattr(fake, name))
    monkeypatch.setattr(fetable.os, "close", lambda fd: None)
    return fake


def fe_key(i: int) -> st.Fe4Key:
    return st.fe4_key(Frontend(f"10.{96 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}", 80))


def ent(i: int, version: int) -> st.Fe4Ent:
    e = st.Fe4Ent(key=fe_key(i))
    e.hdr.svc_id = i * 10 + version
    e.hdr.count = e.hdr.svc_id % 5 + 1  # ties count to svc_id: a torn entry breaks it
    return e


def table(pin_dir: Path) -> fetable.FeTable:
    return fetable.FeTable("fe4", pin_dir, st.Fe4Ent, ENTRIES, st.FE_SLOTS, st.hash_fe4)


def ident(i: int) -> bytes:
    return bytes(fe_key(i))[:-1]


def test_inserts_updates_deletes_and_resizes_never_lose_or_tear(
    kernel: FakeKernel, tmp_path: Path
) -> None:
    t = table(tmp_path)
    t.open()
    assert len(t.shards) == 1
    # one at a time (the agent's path), then a bulk load that grows the table
    for i in range(200):
        t.write([ent(i, 0)])
        kernel.expect[ident(i)] = {i * 10}
    bulk = [ent(i, 0) for i in range(200, 800)]
    t.write(bulk)
    kernel.expect.update({ident(i): {i * 10} for i in range(200, 800)})
    assert t.count == 800 and len(t.shards) >= 8 and t.resizes >= 2
    # updates: during the write either version is fine, afterwards only the new one
    for i in range(0, 800, 3):
        kernel.expect[ident(i)] = {i * 10, i * 10 + 1}
        t.write([ent(i, 1)])
        kernel.expect[ident(i)] = {i * 10 + 1}
    kernel.check()
    for i in range(0, 790):
        del kernel.expect[ident(i)]
        t.delete([fe_key(i)])
        t.maybe_shrink()
    assert kernel.find(fe_key(5)) is None
    assert t.count == 10 and len(t.shards) == 1
    assert kernel.checks > 2_000


def test_adopts_a_pinned_table(kernel: FakeKernel, tmp_path: Path) -> None:
    t = table(tmp_path)
    t.open()
    t.write([ent(i, 0) for i in range(600)])
    t.delete([fe_key(3)])
    again = table(tmp_path)
    again.open()
    assert again.count == 599 and len(again.shards) == len(t.shards)
    assert {e.hdr.svc_id for e in again.live_entries()} == {i * 10 for i in range(600)} - {30}
