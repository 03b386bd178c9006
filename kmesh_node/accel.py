"""Sockmap acceleration (`kmesh-node run --accelerate`): the pinned objects and their life.

Two programs and one map, all optional pins next to the datapath's (no layout change):

    sockhash       SOCKHASH of every established TCP socket of the cgroup, keyed by its
                   own 4-tuple (struct kmn_sock_key); sockets leave it when they close
    prog_sockops   bpf/sockops.c: puts sockets in the sockhash on ACTIVE/PASSIVE_ESTABLISHED
    link_sockops   its cgroup bpf_link (BPF_CGROUP_SOCK_OPS)
    prog_sk_msg    bpf/sk_msg.c: redirects a message into the peer socket's ingress queue
    link_sk_msg    its sockmap bpf_link on the sockhash (BPF_SK_MSG_VERDICT, kernel >= 6.10)

`attach()` creates or adopts them (a pinned link gets the new program by BPF_LINK_UPDATE,
no gap); `remove()` detaches and unpins them, which the datapath does when an agent starts
without --accelerate, so a suite toggles acceleration by restarting the agent. Once the
last reference to the sockhash goes, the kernel takes every socket out of it and they fall
back to plain TCP (bytes already queued by a redirect on a socket nobody reads are lost
with it: toggle between runs, not under load).
"""

from __future__ import annotations

import ctypes as ct
import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kmesh_node import libbpf as lb
from kmesh_node import structs as st
from kmesh_node.progload import NO_ATTACH_TYPE, Unit
from kmesh_node.shardmap import replace_pin

log = logging.getLogger(__name__)

SOCKHASH = "sockhash"
SOCKHASH_VALUE_SIZE = 8  # u64: a lookup from user space returns the socket cookie
# hook -> (function, source, bcc program type, attach type)
HOOKS: dict[str, tuple[str, Path, str, int]] = {
    "sk_msg": ("kmn_sk_msg", st.BPF_DIR / "sk_msg.c", "SK_MSG", lb.ATTACH_SK_MSG_VERDICT),
    "sockops": ("kmn_sockops", st.BPF_DIR / "sockops.c", "SOCK_OPS", lb.ATTACH_CGROUP_SOCK_OPS),
}
# removal order: stop new sockets entering the map first, then the verdict, then the map
PINS = ("link_sockops", "link_sk_msg", "prog_sockops", "prog_sk_msg", SOCKHASH)
KERNEL_HINT = (
    "sockmap acceleration needs a kernel >= 6.10 with CONFIG_BPF_STREAM_PARSER=y and "
    "CONFIG_NET_SOCK_MSG=y (see `kmesh-node preflight`); run without --accelerate otherwise"
)


def units() -> list[Unit]:
    """The two sources to compile, each with its one program."""
    return [
        Unit(str(source), prog_type, {hook: (func, NO_ATTACH_TYPE)})
        for hook, (func, source, prog_type, _at) in HOOKS.items()
    ]


def _shape(fd: int) -> tuple[int, int, int, int]:
    info = lb.map_info(fd)
    return info.type, info.key_size, info.value_size, info.max_entries


WANT_SHAPE = (lb.MAP_SOCKHASH, ct.sizeof(st.SockKey), SOCKHASH_VALUE_SIZE, st.SOCKHASH_ENTRIES)


def open_sockhash(bpffs: Path) -> int:
    """The pinned sockhash, or a new pinned one. A pinned map of another shape (an older
    agent's key) is dropped with its programs: its content is only live sockets, which
    simply take the normal path until they reconnect."""
    path = bpffs / SOCKHASH
    if path.exists():
        fd = lb.obj_get(str(path))
        if _shape(fd) == WANT_SHAPE:
            return fd
        os.close(fd)
        log.info("pinned sockhash has another shape: recreating the acceleration objects")
        remove(bpffs)
    try:
        fd = lb.map_create(
            lb.MAP_SOCKHASH,
            "kmn_sockhash",
            ct.sizeof(st.SockKey),
            SOCKHASH_VALUE_SIZE,
            st.SOCKHASH_ENTRIES,
        )
    except OSError as exc:
        raise RuntimeError(f"cannot create the sockhash ({exc}); {KERNEL_HINT}") from exc
    replace_pin(fd, path)
    return fd


def _swap_link(
    bpffs: Path, hook: str, prog_fd: int, target_fd: int, same_target: Callable[[int], bool]
) -> None:
    """Point the pinned link of `hook` at `prog_fd` (BPF_LINK_UPDATE: no moment without a
    program) when it is on the same target, else create a new one first, then detach the old."""
    attach_type = HOOKS[hook][3]
    link_path = bpffs / f"link_{hook}"
    old = lb.obj_get(str(link_path)) if link_path.exists() else -1
    try:
        if old >= 0 and same_target(old):
            lb.link_update(old, prog_fd)
            return
        try:
            link = lb.link_create(prog_fd, target_fd, attach_type)
        except OSError as exc:
            raise RuntimeError(f"cannot attach the {hook} program ({exc}); {KERNEL_HINT}") from exc
        try:
            replace_pin(link, link_path)
        finally:
            os.close(link)
        if old >= 0:
            _detach_quietly(old)
    finally:
        if old >= 0:
            os.close(old)


def attach(bpffs: Path, cgroup_fd: int, sockhash_fd: int, prog_fds: dict[str, int]) -> None:
    """Attach (or adopt) sk_msg on the sockhash, then sockops on the cgroup, and pin both.

    sk_msg goes first: a socket takes the map's verdict program when it enters the map, so
    a socket inserted before sk_msg is attached would never be redirected."""
    map_id = lb.map_info(sockhash_fd).id
    cgroup_id = os.fstat(cgroup_fd).st_ino
    _swap_link(
        bpffs,
        "sk_msg",
        prog_fds["sk_msg"],
        sockhash_fd,
        lambda fd: lb.sockmap_link_info(fd).map_id == map_id,
    )
    _swap_link(
        bpffs,
        "sockops",
        prog_fds["sockops"],
        cgroup_fd,
        lambda fd: lb.link_info(fd).cgroup_id == cgroup_id,
    )
    for hook, fd in prog_fds.items():
        replace_pin(fd, bpffs / f"prog_{hook}")


def _detach_quietly(link_fd: int) -> None:
    try:
        lb.link_detach(link_fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOLINK, errno.EINVAL, errno.ENOENT):  # already detached
            raise


def remove(bpffs: Path) -> list[str]:
    """Detach the acceleration links and unpin its objects; the names removed."""
    removed = []
    for name in PINS:
        path = bpffs / name
        if not path.exists():
            continue
        if name.startswith("link_"):
            fd = lb.obj_get(str(path))
            try:
                _detach_quietly(fd)
            finally:
                os.close(fd)
        path.unlink()
        removed.append(name)
    if removed:
        log.info("sockmap acceleration off: removed %s", ", ".join(removed))
    return removed


def sockhash_keys(fd: int) -> list[st.SockKey]:
    """Every key in the sockhash (a snapshot by get_next_key; sockhash has no batch ops)."""
    return lb.iter_keys(fd, st.SockKey)  # type: ignore[return-value]


def inspect(bpffs: Path) -> dict[str, Any]:
    """Read-only view for `status`: enabled, links (program, cgroup / map), sockhash use."""
    out: dict[str, Any] = {"enabled": False, "links": {}}
    fds: list[int] = []
    try:
        for hook in HOOKS:
            path = bpffs / f"link_{hook}"
            if not path.exists():
                continue
            fd = lb.obj_get(str(path))
            fds.append(fd)
            if hook == "sockops":
                info = lb.link_info(fd)
                link = {"cgroup_id": info.cgroup_id, "attached": info.cgroup_id != 0}
            else:
                sinfo = lb.sockmap_link_info(fd)
                link = {"map_id": sinfo.map_id, "attached": sinfo.map_id != 0}
            link |= {"link_id": lb.link_info(fd).id, "prog_id": lb.link_info(fd).prog_id}
            out["links"][hook] = link
        if (bpffs / SOCKHASH).exists():
            fd = lb.obj_get(str(bpffs / SOCKHASH))
            fds.append(fd)
            out["sockhash"] = {
                "entries": len(sockhash_keys(fd)),
                "max_entries": lb.map_info(fd).max_entries,
            }
        out["enabled"] = len(out["links"]) == len(HOOKS) and all(
            link["attached"] for link in out["links"].values()
        )
    finally:
        for fd in fds:
            os.close(fd)
    return out
