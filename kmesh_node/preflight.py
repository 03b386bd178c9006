"""`kmesh-node preflight`: can this host run the agent? Each item is ok or missing, with the fix.

File checks read under `Host.root` (so tests run them on a fake tree); kernel checks are
small probes through bpf(2) -- create a map, load a two-instruction program, query a cgroup
-- that leave nothing behind. Exit status is non-zero when something the agent needs is
missing; optional items (bpftool) only warn.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import importlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kmesh_node import bpfobjects

MIN_KERNEL = (5, 8)  # cgroup connect4/6, sendmsg4, recvmsg4, sockmap, BPF_ENABLE_STATS
MEMLOCK_KERNEL = (6, 4)  # fdinfo memlock follows real usage (NO_PREALLOC maps grow)

BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_PROG_QUERY = 16
BPF_LINK_CREATE = 28
ATTACH_SK_MSG_VERDICT = 7
MAP_ARRAY, MAP_SOCKHASH = 2, 18
PROG_SOCK_OPS, PROG_SK_MSG, PROG_CGROUP_SOCK_ADDR = 13, 16, 18
# attach types of the hooks the datapath uses (enum bpf_attach_type)
SOCK_ADDR_HOOKS = {"connect4": 10, "connect6": 11, "sendmsg4": 14, "recvmsg4": 19}


@dataclass
class Check:
    name: str
    ok: bool
    needed: bool
    detail: str
    fix: str = ""

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "missing" if self.needed else "warn"


Probe = Callable[[], tuple[bool, str]]


def _errno_hint(err: int) -> str:
    if err == errno.EPERM:
        return "permission denied: run as root (CAP_BPF + CAP_SYS_ADMIN + CAP_NET_ADMIN)"
    if err == errno.ENOSYS:
        return "no bpf(2): the kernel lacks CONFIG_BPF_SYSCALL"
    return os.strerror(err)


def _map_create(map_type: int, key: int, value: int, entries: int) -> int:
    attr = ctypes.create_string_buffer(128)
    for off, val in enumerate((map_type, key, value, entries)):
        ctypes.c_uint32.from_buffer(attr, off * 4).value = val
    return bpfobjects.bpf(BPF_MAP_CREATE, attr)


def _prog_load(prog_type: int, expected_attach: int = 0) -> int:
    """Load `r0 = 1; exit` (allow / SK_PASS) of `prog_type`; return its fd."""
    insns = ctypes.create_string_buffer(bytes.fromhex("b700000001000000" + "9500000000000000"))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    ctypes.c_uint32.from_buffer(attr, 0).value = prog_type
    ctypes.c_uint32.from_buffer(attr, 4).value = 2
    ctypes.c_uint64.from_buffer(attr, 8).value = ctypes.addressof(insns)
    ctypes.c_uint64.from_buffer(attr, 16).value = ctypes.addressof(lic)
    ctypes.c_uint32.from_buffer(attr, 68).value = expected_attach
    return bpfobjects.bpf(BPF_PROG_LOAD, attr)


def probe_bpf_syscall() -> tuple[bool, str]:
    try:
        os.close(_map_create(MAP_ARRAY, 4, 4, 1))
    except OSError as exc:
        return False, f"creating a 1-entry array map failed: {_errno_hint(exc.errno or 0)}"
    return True, "bpf(2) creates maps"


def probe_cgroup_bpf(cgroup2: str) -> tuple[bool, str]:
    """Load each sock_addr hook's program type and query the cgroup2 root for attachments."""
    loaded = []
    for hook, attach in SOCK_ADDR_HOOKS.items():
        try:
            os.close(_prog_load(PROG_CGROUP_SOCK_ADDR, attach))
        except OSError as exc:
            return False, f"cannot load a cgroup/{hook} program: {_errno_hint(exc.errno or 0)}"
        loaded.append(hook)
    try:
        cg = os.open(cgroup2, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        return False, f"cannot open cgroup2 root {cgroup2}: {exc.strerror}"
    try:
        attr = ctypes.create_string_buffer(128)
        ctypes.c_uint32.from_buffer(attr, 0).value = cg
        ctypes.c_uint32.from_buffer(attr, 4).value = SOCK_ADDR_HOOKS["connect4"]
        bpfobjects.bpf(BPF_PROG_QUERY, attr)
    except OSError as exc:
        return False, f"BPF_PROG_QUERY on {cgroup2} failed ({_errno_hint(exc.errno or 0)})"
    finally:
        os.close(cg)
    return True, f"cgroup/{', cgroup/'.join(loaded)} load; {cgroup2} accepts BPF queries"


def _link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    attr = ctypes.create_string_buffer(128)
    for off, val in enumerate((prog_fd, target_fd, attach_type)):
        ctypes.c_uint32.from_buffer(attr, off * 4).value = val
    return bpfobjects.bpf(BPF_LINK_CREATE, attr)


def probe_sockmap() -> tuple[bool, str]:
    """What `run --accelerate` does, on throwaway objects: a sockhash, an sk_msg program
    linked to it (a sockmap bpf_link, kernel >= 6.10), a sockops program."""
    fds: list[int] = []
    try:
        try:
            fds.append(_map_create(MAP_SOCKHASH, 4, 8, 1))
            fds.append(_prog_load(PROG_SK_MSG))
            fds.append(_prog_load(PROG_SOCK_OPS))
        except OSError as exc:
            return False, f"sockhash/sk_msg/sockops unavailable: {_errno_hint(exc.errno or 0)}"
        try:
            fds.append(_link_create(fds[1], fds[0], ATTACH_SK_MSG_VERDICT))
        except OSError as exc:
            return False, (
                "sk_msg cannot be linked to a sockhash with a bpf_link "
                f"({_errno_hint(exc.errno or 0)}; sockmap links need kernel >= 6.10)"
            )
    finally:
        for fd in reversed(fds):
            os.close(fd)
    return True, "sockhash map, sk_msg (linked to the sockhash) and sockops programs load"


def probe_stats() -> tuple[bool, str]:
    try:
        os.close(bpfobjects.enable_stats())
    except OSError as exc:
        if os.path.exists("/proc/sys/kernel/bpf_stats_enabled"):
            return True, f"BPF_ENABLE_STATS failed ({exc.strerror}); sysctl fallback present"
        return False, f"no BPF_ENABLE_STATS ({exc.strerror}) and no kernel.bpf_stats_enabled"
    return True, "BPF_ENABLE_STATS gives run-time stats on demand"


def probe_bcc() -> tuple[bool, str]:
    try:
        bcc = importlib.import_module("bcc")
    except Exception as exc:  # bcc raises more than ImportError when libbcc is broken
        return False, f"import bcc failed: {exc}"
    return True, f"bcc from {os.path.dirname(bcc.__file__ or '?')}"


@dataclass
class Host:
    """What preflight looks at; tests replace `root` and the probes."""

    root: Path = Path("/")
    release: str = field(default_factory=lambda: os.uname().release)
    euid: int = field(default_factory=os.geteuid)
    bpf_syscall: Probe = probe_bpf_syscall
    cgroup_bpf: Callable[[str], tuple[bool, str]] = probe_cgroup_bpf
    sockmap: Probe = probe_sockmap
    stats: Probe = probe_stats
    bcc: Probe = probe_bcc
    which: Callable[[str], str | None] = shutil.which

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def mounts(self) -> list[tuple[str, str, str]]:
        """(mount point, fs type, options) from proc/self/mounts."""
        try:
            text = self.path("/proc/self/mounts").read_text()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 4:
                out.append((parts[1], parts[2], parts[3]))
        return out


def kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise RuntimeError(f"cannot parse kernel release {release!r}: expected MAJOR.MINOR...")
    return int(m.group(1)), int(m.group(2))


def check_kernel(host: Host) -> Check:
    ver = kernel_version(host.release)
    detail = f"{host.release} (needs >= {MIN_KERNEL[0]}.{MIN_KERNEL[1]})"
    if ver >= MIN_KERNEL and ver < MEMLOCK_KERNEL:
        detail += f"; before {MEMLOCK_KERNEL[0]}.{MEMLOCK_KERNEL[1]} map memlock is an estimate"
    return Check(
        "kernel",
        ver >= MIN_KERNEL,
        True,
        detail,
        "boot a kernel >= 5.8 with CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF",
    )


def check_btf(host: Host) -> Check:
    ok = host.path("/sys/kernel/btf/vmlinux").exists()
    return Check(
        "btf",
        ok,
        False,
        "/sys/kernel/btf/vmlinux present" if ok else "/sys/kernel/btf/vmlinux absent",
        "build the kernel with CONFIG_DEBUG_INFO_BTF=y (bcc works without; CO-RE tools need it)",
    )


def cgroup2_mount(host: Host) -> str | None:
    for point, fstype, _opts in host.mounts():
        if fstype == "cgroup2":
            return point
    return None


def cpu_controller(host: Host, cgroup2: str | None) -> str:
    """'v2', 'v1' (hybrid: the cpu controller is bound to a v1 hierarchy) or 'none'."""
    if cgroup2:
        try:
            ctrls = host.path(f"{cgroup2}/cgroup.controllers").read_text().split()
        except OSError:
            ctrls = []
        if "cpu" in ctrls:
            return "v2"
    for _point, fstype, opts in host.mounts():
        if fstype == "cgroup" and "cpu" in opts.split(","):
            return "v1"
    return "none"


def check_cgroup2(host: Host) -> Check:
    cg2 = cgroup2_mount(host)
    if not cg2:
        return Check(
            "cgroup2",
            False,
            True,
            "no cgroup2 mount in /proc/self/mounts",
            "mount -t cgroup2 none /sys/fs/cgroup/unified (hybrid) or boot with "
            "systemd.unified_cgroup_hierarchy=1",
        )
    cpu = cpu_controller(host, cg2)
    where = {
        "v2": "cpu controller on v2 (cpu.max)",
        "v1": "cpu controller on v1: hybrid host, CPU limits via cpu.cfs_quota_us",
        "none": "no cpu controller mounted (CPU limits unavailable)",
    }[cpu]
    return Check("cgroup2", True, True, f"cgroup2 at {cg2}; {where}")


def check_cgroup_bpf(host: Host) -> Check:
    cg2 = cgroup2_mount(host)
    if not cg2:
        return Check("cgroup_bpf", False, True, "no cgroup2 mount to attach to", "mount cgroup2")
    ok, detail = host.cgroup_bpf(cg2)
    return Check(
        "cgroup_bpf",
        ok,
        True,
        detail,
        "run as root on a kernel with CONFIG_CGROUP_BPF=y and CONFIG_BPF_SYSCALL=y",
    )


def check_bpffs(host: Host, bpffs: str) -> Check:
    points = [p for p, t, _o in host.mounts() if t == "bpf"]
    covering = [p for p in points if bpffs == p or bpffs.startswith(p.rstrip("/") + "/")]
    if covering:
        return Check("bpffs", True, True, f"bpffs mounted at {covering[-1]} (pins in {bpffs})")
    detail = f"{bpffs} is not on a bpf filesystem" + (
        f" (bpffs mounted at {', '.join(points)})" if points else " (no bpffs mounted)"
    )
    return Check("bpffs", False, True, detail, "mount -t bpf bpf /sys/fs/bpf")


def check_headers(host: Host) -> Check:
    build = host.path(f"/lib/modules/{host.release}/build")
    fix = (
        f"apt-get install linux-headers-{host.release}; where none is packaged, install the "
        f"distro's headers and link them at /lib/modules/{host.release}/build "
        "(the host_setup role does both)"
    )
    if not (build / "include").is_dir():
        return Check("kernel_headers", False, True, f"{build} has no headers", fix)
    target = os.readlink(build) if build.is_symlink() else str(build)
    try:
        uts = (build / "include/generated/utsrelease.h").read_text()
        m = re.search(r'UTS_RELEASE\s+"([^"]+)"', uts)
        headers_of = m.group(1) if m else "unknown"
    except OSError:
        headers_of = "unknown"
    if headers_of == host.release:
        return Check("kernel_headers", True, True, f"running kernel's headers ({target})")
    return Check(
        "kernel_headers",
        True,
        True,
        f"distro fallback: headers of {headers_of} at {target}, running {host.release} "
        "(bcc compiles against them; the programs use stable UAPI structs only)",
    )


def check_probe(name: str, probe: Probe, needed: bool, fix: str) -> Check:
    ok, detail = probe()
    return Check(name, ok, needed, detail, fix)


def run_checks(host: Host, bpffs: str, accelerate: bool = False) -> list[Check]:
    """Every check; `accelerate` makes the sockmap items needed (`run --accelerate`)."""
    checks = [
        Check(
            "root",
            host.euid == 0,
            True,
            f"euid {host.euid}",
            "run as root: the agent loads and attaches BPF programs",
        ),
        check_kernel(host),
        check_probe(
            "bpf_syscall",
            host.bpf_syscall,
            True,
            "run as root on a kernel with CONFIG_BPF_SYSCALL=y",
        ),
        check_btf(host),
        check_cgroup2(host),
        check_cgroup_bpf(host),
        check_probe(
            "sockmap",
            host.sockmap,
            accelerate,
            "CONFIG_BPF_STREAM_PARSER=y and CONFIG_NET_SOCK_MSG=y on a kernel >= 6.10 "
            "(needed only by `kmesh-node run --accelerate`; run without the flag otherwise)",
        ),
        check_bpffs(host, bpffs),
        check_probe(
            "bpf_stats",
            host.stats,
            False,
            "kernel >= 5.8 for BPF_ENABLE_STATS (top/metrics show run time 0 without it)",
        ),
        check_headers(host),
        check_probe(
            "bcc",
            host.bcc,
            True,
            "apt-get install python3-bpfcc, and make the venv with --system-site-packages "
            "(make bootstrap)",
        ),
    ]
    tool = host.which("bpftool")
    checks.append(
        Check(
            "bpftool",
            tool is not None,
            False,
            tool or "bpftool not on PATH (kmesh-node reads the kernel itself; handy to debug)",
            "apt-get install bpftool",
        )
    )
    return checks


def render(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.status:<8} {c.name:<15} {c.detail}")
        if not c.ok:
            lines.append(f"{'':<8} {'':<15} fix: {c.fix}")
    return "\n".join(lines)


def preflight_command(args: argparse.Namespace, host: Host | None = None) -> int:
    """`kmesh-node preflight [--json] [--bpffs DIR]`: 1 if something needed is missing."""
    checks = run_checks(
        host or Host(),
        getattr(args, "bpffs", "/sys/fs/bpf/kmesh_node"),
        accelerate=getattr(args, "accelerate", False),
    )
    ok = all(c.ok or not c.needed for c in checks)
    if args.json:
        body = {
            "ok": ok,
            "checks": [dict(asdict(c), status=c.status) for c in checks],
        }
        print(json.dumps(body, indent=2))
    else:
        print(render(checks))
        print("preflight: ok" if ok else "preflight: something the agent needs is missing")
    sys.stdout.flush()
    return 0 if ok else 1
