"""bpf/kmesh_node.h and kmesh_node/structs.py must agree, field for field (no root needed).

The header is parsed with a small C-struct reader (the header keeps to __u8/__u16/__u32
scalars, fixed arrays and nested structs) that lays fields out with natural alignment,
exactly as clang does for BPF; every offset and size is compared with the ctypes mirror.
"""

from __future__ import annotations

import collections
import ctypes as ct
import ipaddress
import re
import socket

import pytest

from kmesh_node import structs as st
from kmesh_node.model import Endpoint, Frontend, L4Proto, LbPolicy

HEADER = st.HEADER.read_text()
SCALARS = {"__u8": 1, "__u16": 2, "__u32": 4, "__u64": 8}


def defines() -> dict[str, int]:
    out = {}
    for name, value in re.findall(r"^#define\s+(KMN_\w+)\s+(0x[0-9a-fA-F]+|\d+)U?\b", HEADER, re.M):
        out[name] = int(value, 0)
    return out


def c_layouts() -> dict[str, tuple[int, int, list[tuple[str, int, int]]]]:
    """struct name -> (size, align, [(field, offset, size)])."""
    consts = defines()
    layouts: dict[str, tuple[int, int, list[tuple[str, int, int]]]] = {}
    body_re = re.compile(r"struct\s+(\w+)\s*\{(.*?)\};", re.S)
    for name, body in body_re.findall(re.sub(r"/\*.*?\*/", "", HEADER, flags=re.S)):
        offset, align, fields = 0, 1, []
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            m = re.fullmatch(r"(struct\s+\w+|__u\d+)\s+(\w+)(?:\[(\w+)\])?", decl)
            assert m, f"cannot parse field {decl!r} of struct {name}"
            ctype, field, count = m.groups()
            if ctype.startswith("struct"):
                size, falign, _ = layouts[ctype.split()[1]]
            else:
                size = falign = SCALARS[ctype]
            n = 1 if count is None else (int(count) if count.isdigit() else consts[count])
            offset = (offset + falign - 1) // falign * falign
            fields.append((field, offset, size * n))
            offset += size * n
            align = max(align, falign)
        layouts[name] = ((offset + align - 1) // align * align, align, fields)
    return layouts


@pytest.mark.parametrize("c_name", sorted(st.MIRRORS))
def test_mirror_matches_header_layout(c_name: str) -> None:
    layouts = c_layouts()
    assert c_name in layouts, f"struct {c_name} missing from {st.HEADER}"
    size, _align, fields = layouts[c_name]
    mirror = st.MIRRORS[c_name]
    assert ct.sizeof(mirror) == size
    assert [f[0] for f in mirror._fields_] == [f[0] for f in fields]
    for field, offset, fsize in fields:
        desc = getattr(mirror, field)
        assert (desc.offset, desc.size) == (offset, fsize), field


def test_every_header_struct_is_mirrored() -> None:
    assert set(c_layouts()) == set(st.MIRRORS)


def test_constants_match_header() -> None:
    d = defines()
    assert d["KMN_MAGIC"] == st.MAGIC
    assert d["KMN_LAYOUT_VERSION"] == st.LAYOUT_VERSION
    assert d["KMN_INLINE4"] == st.INLINE4 and d["KMN_INLINE6"] == st.INLINE6
    assert d["KMN_FE_SLOTS"] == st.FE_SLOTS == 1 << d["KMN_FE_SLOTS_BITS"]
    assert d["KMN_FE_SLOTS_BITS"] == st.FE_SLOTS_BITS and d["KMN_EP_SLOTS"] == st.EP_SLOTS
    assert d["KMN_FE4_ENTRIES"] == st.FE4_ENTRIES == 1 << d["KMN_FE4_ENTRIES_BITS"]
    assert d["KMN_FE6_ENTRIES"] == st.FE6_ENTRIES == 1 << d["KMN_FE6_ENTRIES_BITS"]
    assert d["KMN_FE4_ENTRIES_BITS"] == st.FE4_ENTRIES_BITS
    assert d["KMN_FE6_ENTRIES_BITS"] == st.FE6_ENTRIES_BITS
    assert d["KMN_PROBES"] == st.PROBES
    assert d["KMN_HASH_MUL"] == st.HASH_MUL
    assert d["KMN_EPSET_MUL"] == st.EPSET_MUL
    assert d["KMN_POLICY_RANDOM"] == st.POLICY[LbPolicy.RANDOM]
    assert d["KMN_POLICY_ROUND_ROBIN"] == st.POLICY[LbPolicy.ROUND_ROBIN]
    assert d["KMN_CTR_NO_ENDPOINT"] == st.CTR_NO_ENDPOINT and d["KMN_CTR_MAX"] == st.CTR_MAX


def test_frontend_entries_fill_whole_cache_lines() -> None:
    assert ct.sizeof(st.Fe4Ent) == 64 and ct.sizeof(st.Fe6Ent) == 96


def test_encoding_is_network_order_as_the_kernel_holds_it() -> None:
    key = st.fe4_key(Frontend("10.96.0.1", 80, L4Proto.UDP))
    raw = bytes(key)
    assert raw[:4] == ipaddress.IPv4Address("10.96.0.1").packed
    assert raw[4:6] == (80).to_bytes(2, "big")
    assert raw[6] == socket.IPPROTO_UDP
    ep = st.ep6(Endpoint("fd00::1", 8080))
    assert bytes(ep)[:16] == ipaddress.IPv6Address("fd00::1").packed
    assert bytes(ep)[16:18] == (8080).to_bytes(2, "big")


@pytest.mark.parametrize(
    "fe",
    [Frontend("10.96.3.7", 443), Frontend("fd00:96::1", 53, L4Proto.UDP)],
)
def test_frontend_keys_round_trip(fe: Frontend) -> None:
    if st.is_v6(fe):
        assert st.decode_fe6(st.fe6_key(fe)) == fe
    else:
        assert st.decode_fe4(st.fe4_key(fe)) == fe


def test_hashes_spread_keys_over_slots_and_positions() -> None:
    hashes = [
        st.hash_fe4(st.fe4_key(Frontend(f"10.96.{i // 250}.{i % 250}", 80))) for i in range(4096)
    ]
    assert all(0 <= h < 1 << 32 for h in hashes)
    # sequential ClusterIPs must not pile into a few slots (the shards stay balanced)
    slots = collections.Counter(h >> (32 - st.FE_SLOTS_BITS) for h in hashes)
    assert len(slots) == st.FE_SLOTS and max(slots.values()) < 2 * 4096 / st.FE_SLOTS
    shift = 32 - st.FE_SLOTS_BITS - st.FE4_ENTRIES_BITS
    homes = {(h >> shift) & (st.FE4_ENTRIES - 1) for h in hashes}
    assert len(homes) > 0.8 * min(4096, st.FE4_ENTRIES)
    ep_slots = {st.hash_epx(st.EpxKey(epset=7, idx=i)) & (st.EP_SLOTS - 1) for i in range(5, 2000)}
    assert len(ep_slots) > st.EP_SLOTS * 0.75
