"""ctypes mirrors of bpf/kmesh_node.h, field for field, plus the encoders the datapath uses.

Keep this file and the header in step: tests/unit/test_structs.py parses the header and
compares sizes and constants, so a drift fails in CI instead of corrupting maps.
"""

from __future__ import annotations

import ctypes as ct
import ipaddress
import socket
from pathlib import Path

from kmesh_node.model import Endpoint, Frontend, L4Proto, LbPolicy

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
HEADER = BPF_DIR / "kmesh_node.h"

MAGIC = 0x4B4D4E31
LAYOUT_VERSION = 5
FE_SLOTS_BITS = 7
FE_SLOTS = 128
FE4_ENTRIES_BITS = 11
FE4_ENTRIES = 2048
FE6_ENTRIES_BITS = 9
FE6_ENTRIES = 512
PROBES = 8
EP_SLOTS = 1024
HASH_MUL = 0x9E3779B1
EPSET_MUL = 65599
INLINE4 = 5
INLINE6 = 3
POLICY = {LbPolicy.RANDOM: 0, LbPolicy.ROUND_ROBIN: 1}
CTR_NO_ENDPOINT = 0
CTR_ACCEL_REDIRECT = 1
CTR_ACCEL_PASS = 2
CTR_MAX = 4
SOCKHASH_ENTRIES = 65536
PROTO = {L4Proto.TCP: socket.IPPROTO_TCP, L4Proto.UDP: socket.IPPROTO_UDP}


class Fe4Key(ct.Structure):
    _fields_ = (
        ("addr", ct.c_uint32),
        ("port", ct.c_uint16),
        ("proto", ct.c_uint8),
        ("used", ct.c_uint8),
    )


class Fe6Key(ct.Structure):
    _fields_ = (
        ("addr", ct.c_uint32 * 4),
        ("port", ct.c_uint16),
        ("proto", ct.c_uint8),
        ("used", ct.c_uint8),
    )


class Ep4(ct.Structure):
    _fields_ = (("addr", ct.c_uint32), ("port", ct.c_uint16), ("pad", ct.c_uint16))


class Ep6(ct.Structure):
    _fields_ = (("addr", ct.c_uint32 * 4), ("port", ct.c_uint16), ("pad", ct.c_uint16))


class FeHdr(ct.Structure):
    _fields_ = (
        ("svc_id", ct.c_uint32),
        ("epset", ct.c_uint32),
        ("rr", ct.c_uint32),
        ("count", ct.c_uint16),
        ("policy", ct.c_uint8),
        ("flags", ct.c_uint8),
    )


class Fe4Ent(ct.Structure):
    _fields_ = (("key", Fe4Key), ("hdr", FeHdr), ("ep", Ep4 * INLINE4))


class Fe6Ent(ct.Structure):
    _fields_ = (("key", Fe6Key), ("hdr", FeHdr), ("ep", Ep6 * INLINE6))


class EpxKey(ct.Structure):
    _fields_ = (("epset", ct.c_uint32), ("idx", ct.c_uint32))


class Orig4(ct.Structure):
    _fields_ = (
        ("vip_addr", ct.c_uint32),
        ("vip_port", ct.c_uint32),
        ("ep_addr", ct.c_uint32),
        ("ep_port", ct.c_uint32),
    )


class Orig6(ct.Structure):
    _fields_ = (
        ("vip_addr", ct.c_uint32 * 4),
        ("vip_port", ct.c_uint32),
        ("ep_addr", ct.c_uint32 * 4),
        ("ep_port", ct.c_uint32),
    )


class SockKey(ct.Structure):
    """One TCP socket from its own side (sockhash key); see sock_key() for the encoding."""

    _fields_ = (
        ("local_ip", ct.c_uint32 * 4),
        ("remote_ip", ct.c_uint32 * 4),
        ("local_port", ct.c_uint32),
        ("remote_port", ct.c_uint32),
    )


class Version(ct.Structure):
    _fields_ = (
        ("magic", ct.c_uint32),
        ("layout", ct.c_uint32),
        ("inline4", ct.c_uint32),
        ("inline6", ct.c_uint32),
    )


# C struct name -> mirror, for the header consistency test.
MIRRORS: dict[str, type[ct.Structure]] = {
    "kmn_fe4_key": Fe4Key,
    "kmn_fe6_key": Fe6Key,
    "kmn_ep4": Ep4,
    "kmn_ep6": Ep6,
    "kmn_fe_hdr": FeHdr,
    "kmn_fe4_ent": Fe4Ent,
    "kmn_fe6_ent": Fe6Ent,
    "kmn_epx_key": EpxKey,
    "kmn_orig4": Orig4,
    "kmn_orig6": Orig6,
    "kmn_sock_key": SockKey,
    "kmn_version": Version,
}


def expected_version() -> Version:
    return Version(magic=MAGIC, layout=LAYOUT_VERSION, inline4=INLINE4, inline6=INLINE6)


def _be32(addr: str) -> int:
    # Stored as the kernel holds it: the 4 address bytes in memory order. inet_pton is
    # strict (no shorthand forms) and ~10x faster than ipaddress for bulk loads.
    return int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "little")


def _be16(port: int) -> int:
    return socket.htons(port)


def _v6_words(addr: str) -> tuple[int, int, int, int]:
    b = socket.inet_pton(socket.AF_INET6, addr)
    return tuple(int.from_bytes(b[i : i + 4], "little") for i in range(0, 16, 4))  # type: ignore[return-value]


def is_v6(fe: Frontend) -> bool:
    return ipaddress.ip_address(fe.address).version == 6


def fe4_key(fe: Frontend) -> Fe4Key:
    return Fe4Key(
        addr=_be32(fe.address),
        port=_be16(fe.port),
        proto=PROTO[fe.protocol],
    )


def fe6_key(fe: Frontend) -> Fe6Key:
    k = Fe6Key(port=_be16(fe.port), proto=PROTO[fe.protocol])
    k.addr[:] = _v6_words(fe.address)
    return k


def ep4(ep: Endpoint) -> Ep4:
    return Ep4(addr=_be32(ep.address), port=_be16(ep.port))


def ep6(ep: Endpoint) -> Ep6:
    e = Ep6(port=_be16(ep.port))
    e.addr[:] = _v6_words(ep.address)
    return e


def decode_fe4(key: Fe4Key) -> Frontend:
    addr = ipaddress.IPv4Address(key.addr.to_bytes(4, "little"))
    return Frontend(str(addr), socket.ntohs(key.port), _l4(key.proto))


def decode_fe6(key: Fe6Key) -> Frontend:
    raw = b"".join(w.to_bytes(4, "little") for w in key.addr)
    return Frontend(str(ipaddress.IPv6Address(raw)), socket.ntohs(key.port), _l4(key.proto))


def _sock_words(addr: str) -> tuple[int, int, int, int]:
    """== KMN_SOCK_ADDR in bpf/sock_key.h: IPv4 and IPv4-mapped IPv6 in word 0, rest 0."""
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return (int.from_bytes(ip.packed, "little"), 0, 0, 0)
    return _v6_words(str(ip))


def sock_key(local: tuple[str, int], remote: tuple[str, int]) -> SockKey:
    """The sockhash key of a socket bound to `local` and connected to `remote`."""
    for _addr, port in (local, remote):
        if not 0 <= port < 65536:
            raise ValueError(f"port {port} is out of range 0..65535")
    k = SockKey(local_port=local[1], remote_port=remote[1])
    k.local_ip[:] = _sock_words(local[0])
    k.remote_ip[:] = _sock_words(remote[0])
    return k


def peer_key(key: SockKey) -> SockKey:
    """== the key bpf/sk_msg.c looks up for a message sent on `key`'s socket."""
    p = SockKey(local_port=key.remote_port, remote_port=key.local_port)
    p.local_ip[:] = list(key.remote_ip)
    p.remote_ip[:] = list(key.local_ip)
    return p


def _sock_addr(words: ct.Array[ct.c_uint32]) -> str:
    if not any(words[1:]):
        return str(ipaddress.IPv4Address(words[0].to_bytes(4, "little")))
    return str(ipaddress.IPv6Address(b"".join(w.to_bytes(4, "little") for w in words)))


def decode_sock_key(key: SockKey) -> tuple[tuple[str, int], tuple[str, int]]:
    """((local address, port), (remote address, port)) of a sockhash key."""
    return (
        (_sock_addr(key.local_ip), key.local_port),
        (_sock_addr(key.remote_ip), key.remote_port),
    )


def hash32(x: int) -> int:
    """== kmn_hash() in bpf/sock_addr.c: fold, then 32-bit multiplicative hash."""
    x ^= x >> 16
    return (x * HASH_MUL) & 0xFFFFFFFF


def hash_fe4(key: Fe4Key) -> int:
    """32-bit hash of a frontend key (frontend tables use its top bits)."""
    return hash32(key.addr ^ (key.port << 16) ^ key.proto)


def hash_fe6(key: Fe6Key) -> int:
    a = key.addr
    return hash32(a[0] ^ a[1] ^ a[2] ^ a[3] ^ (key.port << 16) ^ key.proto)


def hash_epx(key: EpxKey) -> int:
    """16-bit hash of an overflow key (== kmn_shard(): a map of S slots uses & (S - 1))."""
    return hash32((key.epset * EPSET_MUL + key.idx) & 0xFFFFFFFF) >> 16


def _l4(proto: int) -> L4Proto:
    for l4, num in PROTO.items():
        if num == proto:
            return l4
    raise ValueError(f"unknown IP protocol {proto} in a pinned frontend key")
