"""Thin ctypes binding to the system libbpf (Debian's libbpf1) for what bcc does not wrap.

bcc compiles and loads our programs; everything around them — creating map-in-map inner
maps, batch updates, pinning, bpf_link create/update/detach, object info — goes through
libbpf's low-level `bpf_*` API here. libbpf >= 1.0 returns -errno on failure; every
wrapper turns that into an OSError carrying the call and the errno.
"""

from __future__ import annotations

import ctypes as ct
import ctypes.util
import errno
import os
from functools import cache

# enum bpf_map_type (uapi/linux/bpf.h)
MAP_HASH = 1
MAP_ARRAY = 2
MAP_PERCPU_ARRAY = 6
MAP_ARRAY_OF_MAPS = 12
MAP_SOCKHASH = 18
MAP_SK_STORAGE = 24

F_NO_PREALLOC = 1  # BPF_F_NO_PREALLOC

# enum bpf_attach_type
ATTACH_CGROUP_SOCK_OPS = 3
ATTACH_SK_MSG_VERDICT = 7
ATTACH_INET4_CONNECT = 10
ATTACH_INET6_CONNECT = 11
ATTACH_UDP4_SENDMSG = 14
ATTACH_UDP6_SENDMSG = 15
ATTACH_UDP4_RECVMSG = 19
ATTACH_UDP6_RECVMSG = 20

BTF_INT_SIGNED = 1


class MapCreateOpts(ct.Structure):
    """struct bpf_map_create_opts (libbpf 1.1)."""

    _fields_ = (
        ("sz", ct.c_size_t),
        ("btf_fd", ct.c_uint32),
        ("btf_key_type_id", ct.c_uint32),
        ("btf_value_type_id", ct.c_uint32),
        ("btf_vmlinux_value_type_id", ct.c_uint32),
        ("inner_map_fd", ct.c_uint32),
        ("map_flags", ct.c_uint32),
        ("map_extra", ct.c_uint64),
        ("numa_node", ct.c_uint32),
        ("map_ifindex", ct.c_uint32),
    )


class BatchOpts(ct.Structure):
    """struct bpf_map_batch_opts."""

    _fields_ = (("sz", ct.c_size_t), ("elem_flags", ct.c_uint64), ("flags", ct.c_uint64))


class MapInfo(ct.Structure):
    """struct bpf_map_info (prefix we read; the kernel fills up to the size we pass)."""

    _fields_ = (
        ("type", ct.c_uint32),
        ("id", ct.c_uint32),
        ("key_size", ct.c_uint32),
        ("value_size", ct.c_uint32),
        ("max_entries", ct.c_uint32),
        ("map_flags", ct.c_uint32),
        ("name", ct.c_char * 16),
    )


class ProgInfo(ct.Structure):
    """struct bpf_prog_info prefix: type, id, tag."""

    _fields_ = (("type", ct.c_uint32), ("id", ct.c_uint32), ("tag", ct.c_uint8 * 8))


class LinkInfo(ct.Structure):
    """struct bpf_link_info prefix for cgroup links."""

    _fields_ = (
        ("type", ct.c_uint32),
        ("id", ct.c_uint32),
        ("prog_id", ct.c_uint32),
        ("_pad", ct.c_uint32),
        ("cgroup_id", ct.c_uint64),
        ("attach_type", ct.c_uint32),
    )


class SockmapLinkInfo(ct.Structure):
    """struct bpf_link_info prefix for sockmap links (sk_msg/sk_skb on a sockmap/hash)."""

    _fields_ = (
        ("type", ct.c_uint32),
        ("id", ct.c_uint32),
        ("prog_id", ct.c_uint32),
        ("_pad", ct.c_uint32),
        ("map_id", ct.c_uint32),
        ("attach_type", ct.c_uint32),
    )


@cache
def _lib() -> ct.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ct.CDLL(name, use_errno=True)
    except OSError as exc:
        raise RuntimeError(
            f"cannot load libbpf ({name}): {exc}; install it with `apt-get install libbpf1`"
        ) from exc
    sig = {
        "bpf_map_create": (
            ct.c_int,
            [ct.c_int, ct.c_char_p, ct.c_uint32, ct.c_uint32, ct.c_uint32, ct.c_void_p],
        ),
        "bpf_map_update_elem": (ct.c_int, [ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_uint64]),
        "bpf_map_lookup_elem": (ct.c_int, [ct.c_int, ct.c_void_p, ct.c_void_p]),
        "bpf_map_delete_elem": (ct.c_int, [ct.c_int, ct.c_void_p]),
        "bpf_map_get_next_key": (ct.c_int, [ct.c_int, ct.c_void_p, ct.c_void_p]),
        "bpf_map_update_batch": (
            ct.c_int,
            [ct.c_int, ct.c_void_p, ct.c_void_p, ct.POINTER(ct.c_uint32), ct.c_void_p],
        ),
        "bpf_map_lookup_batch": (
            ct.c_int,
            [
                ct.c_int,
                ct.c_void_p,
                ct.c_void_p,
                ct.c_void_p,
                ct.c_void_p,
                ct.POINTER(ct.c_uint32),
                ct.c_void_p,
            ],
        ),
        "bpf_map_delete_batch": (
            ct.c_int,
            [ct.c_int, ct.c_void_p, ct.POINTER(ct.c_uint32), ct.c_void_p],
        ),
        "bpf_obj_pin": (ct.c_int, [ct.c_int, ct.c_char_p]),
        "bpf_obj_get": (ct.c_int, [ct.c_char_p]),
        "bpf_obj_get_info_by_fd": (ct.c_int, [ct.c_int, ct.c_void_p, ct.POINTER(ct.c_uint32)]),
        "bpf_map_get_fd_by_id": (ct.c_int, [ct.c_uint32]),
        "bpf_link_create": (ct.c_int, [ct.c_int, ct.c_int, ct.c_int, ct.c_void_p]),
        "bpf_link_update": (ct.c_int, [ct.c_int, ct.c_int, ct.c_void_p]),
        "bpf_link_detach": (ct.c_int, [ct.c_int]),
        "bpf_prog_query": (
            ct.c_int,
            [
                ct.c_int,
                ct.c_int,
                ct.c_uint32,
                ct.POINTER(ct.c_uint32),
                ct.POINTER(ct.c_uint32),
                ct.POINTER(ct.c_uint32),
            ],
        ),
        "btf__new_empty": (ct.c_void_p, []),
        "btf__add_int": (ct.c_int, [ct.c_void_p, ct.c_char_p, ct.c_size_t, ct.c_int]),
        "btf__add_struct": (ct.c_int, [ct.c_void_p, ct.c_char_p, ct.c_uint32]),
        "btf__add_field": (
            ct.c_int,
            [ct.c_void_p, ct.c_char_p, ct.c_int, ct.c_uint32, ct.c_uint32],
        ),
        "btf__load_into_kernel": (ct.c_int, [ct.c_void_p]),
        "btf__fd": (ct.c_int, [ct.c_void_p]),
        "btf__free": (None, [ct.c_void_p]),
    }
    for fname, (restype, argtypes) in sig.items():
        fn = getattr(lib, fname)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = -ret if ret != -1 else (ct.get_errno() or errno.EINVAL)
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def map_create(
    map_type: int,
    name: str,
    key_size: int,
    value_size: int,
    max_entries: int,
    *,
    flags: int = 0,
    inner_map_fd: int = 0,
    btf_fd: int = 0,
    btf_key_type_id: int = 0,
    btf_value_type_id: int = 0,
) -> int:
    """Create a map and return its fd (the caller owns it)."""
    opts = MapCreateOpts(
        sz=ct.sizeof(MapCreateOpts),
        map_flags=flags,
        inner_map_fd=inner_map_fd,
        btf_fd=btf_fd,
        btf_key_type_id=btf_key_type_id,
        btf_value_type_id=btf_value_type_id,
    )
    fd = _lib().bpf_map_create(
        map_type, name.encode()[:15], key_size, value_size, max_entries, ct.byref(opts)
    )
    return _check(fd, f"bpf_map_create({name}, max_entries={max_entries})")


def update_elem(fd: int, key: ct._CData, value: ct._CData, flags: int = 0) -> None:
    _check(_lib().bpf_map_update_elem(fd, ct.byref(key), ct.byref(value), flags), "map update")


def lookup_elem(fd: int, key: ct._CData, value: ct._CData) -> bool:
    """Fill `value` for `key`; False when the key is absent."""
    ret = _lib().bpf_map_lookup_elem(fd, ct.byref(key), ct.byref(value))
    if ret < 0 and (-ret == errno.ENOENT or ct.get_errno() == errno.ENOENT):
        return False
    _check(ret, "map lookup")
    return True


def delete_elem(fd: int, key: ct._CData) -> bool:
    """Delete `key`; False when it was absent."""
    ret = _lib().bpf_map_delete_elem(fd, ct.byref(key))
    if ret < 0 and (-ret == errno.ENOENT or ct.get_errno() == errno.ENOENT):
        return False
    _check(ret, "map delete")
    return True


def iter_keys(fd: int, key_type: type[ct.Structure]) -> list[ct.Structure]:
    """All keys of a map (snapshot by get_next_key)."""
    keys: list[ct.Structure] = []
    lib = _lib()
    cur: ct.Structure | None = None
    while True:
        nxt = key_type()
        ret = lib.bpf_map_get_next_key(fd, None if cur is None else ct.byref(cur), ct.byref(nxt))
        if ret < 0:
            if -ret == errno.ENOENT or ct.get_errno() == errno.ENOENT:
                return keys
            _check(ret, "map get_next_key")
        keys.append(nxt)
        cur = nxt


def update_batch(fd: int, keys: ct.Array, values: ct.Array) -> None:
    """Write len(keys) elements in one syscall (hash maps, kernel >= 5.6)."""
    n = len(keys)
    if n == 0:
        return
    count = ct.c_uint32(n)
    opts = BatchOpts(sz=ct.sizeof(BatchOpts))
    _check(
        _lib().bpf_map_update_batch(fd, keys, values, ct.byref(count), ct.byref(opts)),
        f"map update_batch ({count.value}/{n} written)",
    )


def lookup_all(
    fd: int, key_type: type[ct.Structure], val_type: type[ct.Structure], chunk: int = 65536
) -> tuple[ct.Array, ct.Array]:
    """Every (key, value) of a hash map, read in batches (a snapshot per batch)."""
    lib = _lib()
    chunks: list[tuple[ct.Array, ct.Array, int]] = []
    token_in = ct.c_uint64(0)
    token_out = ct.c_uint64(0)
    first = True
    total = 0
    opts = BatchOpts(sz=ct.sizeof(BatchOpts))
    while True:
        keys = (key_type * chunk)()
        vals = (val_type * chunk)()
        count = ct.c_uint32(chunk)
        ret = lib.bpf_map_lookup_batch(
            fd,
            None if first else ct.byref(token_in),
            ct.byref(token_out),
            keys,
            vals,
            ct.byref(count),
            ct.byref(opts),
        )
        done = ret < 0 and (-ret == errno.ENOENT or ct.get_errno() == errno.ENOENT)
        if ret < 0 and not done:
            _check(ret, "map lookup_batch")
        if count.value:
            chunks.append((keys, vals, count.value))
            total += count.value
        if done:
            break
        token_in.value = token_out.value
        first = False
    all_keys = (key_type * total)()
    all_vals = (val_type * total)()
    pos = 0
    ksz, vsz = ct.sizeof(key_type), ct.sizeof(val_type)
    for k, v, n in chunks:
        ct.memmove(ct.addressof(all_keys) + pos * ksz, k, n * ksz)
        ct.memmove(ct.addressof(all_vals) + pos * vsz, v, n * vsz)
        pos += n
    return all_keys, all_vals


def delete_batch(fd: int, keys: ct.Array) -> None:
    n = len(keys)
    if n == 0:
        return
    count = ct.c_uint32(n)
    opts = BatchOpts(sz=ct.sizeof(BatchOpts))
    _check(
        _lib().bpf_map_delete_batch(fd, keys, ct.byref(count), ct.byref(opts)),
        "map delete_batch",
    )


def obj_pin(fd: int, path: str) -> None:
    _check(_lib().bpf_obj_pin(fd, path.encode()), f"pin {path}")


def obj_get(path: str) -> int:
    return _check(_lib().bpf_obj_get(path.encode()), f"open pinned {path}")


def _info(fd: int, info: ct.Structure) -> None:
    size = ct.c_uint32(ct.sizeof(info))
    _check(_lib().bpf_obj_get_info_by_fd(fd, ct.byref(info), ct.byref(size)), "obj info")


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    _info(fd, info)
    return info


def prog_info(fd: int) -> ProgInfo:
    info = ProgInfo()
    _info(fd, info)
    return info


def link_info(fd: int) -> LinkInfo:
    info = LinkInfo()
    _info(fd, info)
    return info


def sockmap_link_info(fd: int) -> SockmapLinkInfo:
    info = SockmapLinkInfo()
    _info(fd, info)
    return info


def map_fd_by_id(map_id: int) -> int:
    return _check(_lib().bpf_map_get_fd_by_id(map_id), f"map id {map_id}")


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    return _check(_lib().bpf_link_create(prog_fd, target_fd, attach_type, None), "link create")


def link_update(link_fd: int, new_prog_fd: int) -> None:
    """Swap the program behind a link atomically: no moment without a program."""
    _check(_lib().bpf_link_update(link_fd, new_prog_fd, None), "link update")


def link_detach(link_fd: int) -> None:
    _check(_lib().bpf_link_detach(link_fd), "link detach")


def prog_query(target_fd: int, attach_type: int) -> list[int]:
    """Ids of programs attached to a cgroup for one attach type."""
    ids = (ct.c_uint32 * 64)()
    cnt = ct.c_uint32(64)
    flags = ct.c_uint32(0)
    _check(
        _lib().bpf_prog_query(target_fd, attach_type, 0, ct.byref(flags), ids, ct.byref(cnt)),
        "prog query",
    )
    return list(ids[: cnt.value])


def btf_struct_fd(
    struct_name: str, fields: list[tuple[str, int]], size: int
) -> tuple[int, int, int]:
    """Load a tiny BTF blob {int; struct of u32 fields}; return (btf_fd, int_id, struct_id).

    SK_STORAGE maps must carry BTF for their key and value; bcc would only make one as a
    side effect of compiling, and we create every map ourselves so that all are pinned.
    """
    lib = _lib()
    btf = lib.btf__new_empty()
    if not btf:
        raise OSError(errno.ENOMEM, "btf__new_empty failed")
    try:
        int_id = _check(lib.btf__add_int(btf, b"int", 4, BTF_INT_SIGNED), "btf int")
        u32_id = _check(lib.btf__add_int(btf, b"unsigned int", 4, 0), "btf u32")
        struct_id = _check(lib.btf__add_struct(btf, struct_name.encode(), size), "btf struct")
        for name, bit_off in fields:
            _check(lib.btf__add_field(btf, name.encode(), u32_id, bit_off, 0), "btf field")
        _check(lib.btf__load_into_kernel(btf), "btf load")
        fd = os.dup(_check(lib.btf__fd(btf), "btf fd"))
    finally:
        lib.btf__free(btf)
    return fd, int_id, struct_id
