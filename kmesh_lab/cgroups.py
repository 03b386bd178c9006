"""Pod cgroups on pure cgroup v2 hosts and on hybrid (v1 cpu + v2 unified) hosts.

Each pod gets one cgroup v2 directory (BPF programs attach there, and `cpu.stat` gives CPU
accounting on both layouts) and, where the cpu controller is still bound to cgroup v1 (a
hybrid host such as this one), a v1 `cpu` directory that carries the CPU limit. The layout is
detected from /proc/self/mounts, so the same code serves both; tests pass a fake mounts file
and a temporary root to exercise the layout this host does not have.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

CFS_PERIOD_US = 100_000  # the kernel's default CFS period; limits are quota / period


@dataclass(frozen=True)
class Layout:
    """Where the lab's cgroup trees live on this host."""

    v2_root: Path  # the cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified)
    v1_cpu_root: Path | None  # v1 hierarchy holding the cpu controller (hybrid), else None
    v1_extra_roots: tuple[Path, ...] = ()  # other v1 hierarchies we join (cpuacct when separate)

    @property
    def mode(self) -> str:
        return "hybrid" if self.v1_cpu_root else "v2"

    def v2_dir(self, group: str) -> Path:
        return self.v2_root / group

    def limit_dirs(self, group: str) -> list[Path]:
        """Every directory a process of the pod must join, v2 first."""
        dirs = [self.v2_dir(group)]
        if self.v1_cpu_root:
            dirs.append(self.v1_cpu_root / group)
        dirs.extend(root / group for root in self.v1_extra_roots)
        return dirs


def detect(mounts_file: str = "/proc/self/mounts") -> Layout:
    """Read the mount table and say where cgroup v2 and a v1 cpu controller live."""
    v2_root: Path | None = None
    v1_cpu: Path | None = None
    extra: list[Path] = []
    with open(mounts_file, encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) < 4:
                continue
            path, fstype, options = fields[1], fields[2], set(fields[3].split(","))
            if fstype == "cgroup2" and v2_root is None:
                v2_root = Path(path)
            elif fstype == "cgroup" and "cpu" in options:
                v1_cpu = Path(path)
            elif fstype == "cgroup" and "cpuacct" in options:
                extra.append(Path(path))
    if v2_root is None:
        raise RuntimeError(
            "no cgroup2 filesystem is mounted: BPF cgroup programs need one. "
            "Fix: mount -t cgroup2 none /sys/fs/cgroup/unified (hybrid) or boot with "
            "systemd.unified_cgroup_hierarchy=1"
        )
    # cpuacct mounted together with cpu is the same directory: do not join it twice.
    extra = [p for p in extra if p != v1_cpu]
    return Layout(v2_root=v2_root, v1_cpu_root=v1_cpu, v1_extra_roots=tuple(extra))


def parse_millicores(value: object, name: str) -> int:
    """Validate a CPU limit in millicores: a whole number >= 0 (0 = no limit)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{name}: {value!r} is not a whole number of millicores (e.g. 250)")
    try:
        millicores = int(value)
    except ValueError:
        raise ValueError(
            f"{name}: {value!r} is not a whole number of millicores (e.g. 250, or 0 for none)"
        ) from None
    if millicores < 0:
        raise ValueError(f"{name}: {millicores} is negative; use 0 for no limit")
    return millicores


def quota_us(millicores: int) -> int:
    """CFS quota for `millicores` over the default period (1000 m = one full core)."""
    return millicores * CFS_PERIOD_US // 1000


def _write(path: Path, text: str) -> bool:
    """Write `text` unless the file already holds it; return whether it changed."""
    if path.read_text(encoding="utf-8").strip() == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def v2_cpu_controller_enabled(layout: Layout) -> bool:
    controllers = (layout.v2_root / "cgroup.controllers").read_text(encoding="utf-8").split()
    return "cpu" in controllers


def ensure_group(layout: Layout, group: str, millicores: int) -> bool:
    """Create the pod's cgroup directories and apply its CPU limit; return whether changed.

    The limit goes where the kernel enforces it: v2 `cpu.max` when the cpu controller is
    on v2, else v1 `cpu.cfs_quota_us`. Every level between the root and the pod is created.
    """
    changed = False
    for path in layout.limit_dirs(group):
        if not path.is_dir():
            path.mkdir(parents=True)
            changed = True
    if layout.v1_cpu_root is None:
        if not v2_cpu_controller_enabled(layout):
            raise RuntimeError(
                f"the cpu controller is not available in {layout.v2_root}: CPU limits cannot "
                "be enforced. Fix: enable it in the parent's cgroup.subtree_control "
                "(echo +cpu > cgroup.subtree_control) or run without CPU limits (0)"
            )
        changed |= _enable_v2_cpu(layout, group)
        want = "max" if millicores == 0 else str(quota_us(millicores))
        changed |= _write(layout.v2_dir(group) / "cpu.max", f"{want} {CFS_PERIOD_US}")
    else:
        cpu_dir = layout.v1_cpu_root / group
        changed |= _write(cpu_dir / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        want = "-1" if millicores == 0 else str(quota_us(millicores))
        changed |= _write(cpu_dir / "cpu.cfs_quota_us", want)
    return changed


def _enable_v2_cpu(layout: Layout, group: str) -> bool:
    """Enable +cpu in subtree_control of every ancestor of `group` below the v2 root."""
    changed = False
    parent = layout.v2_root
    for part in Path(group).parts[:-1]:
        parent = parent / part
        control = parent / "cgroup.subtree_control"
        if "cpu" not in control.read_text(encoding="utf-8").split():
            control.write_text("+cpu", encoding="utf-8")
            changed = True
    # The root's subtree_control must also delegate cpu to the first level.
    root_control = layout.v2_root / "cgroup.subtree_control"
    if "cpu" not in root_control.read_text(encoding="utf-8").split():
        root_control.write_text("+cpu", encoding="utf-8")
        changed = True
    return changed


def limit_of(layout: Layout, group: str) -> int:
    """The pod's CPU limit in millicores as the kernel holds it (0 = none)."""
    if layout.v1_cpu_root is None:
        quota, period = (layout.v2_dir(group) / "cpu.max").read_text().split()
        return 0 if quota == "max" else int(quota) * 1000 // int(period)
    cpu_dir = layout.v1_cpu_root / group
    quota = int((cpu_dir / "cpu.cfs_quota_us").read_text())
    period = int((cpu_dir / "cpu.cfs_period_us").read_text())
    return 0 if quota < 0 else quota * 1000 // period


def usage_usec(layout: Layout, group: str) -> int:
    """CPU time used by the pod, from cgroup v2 `cpu.stat` (present on both layouts)."""
    for line in (layout.v2_dir(group) / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    raise RuntimeError(f"{layout.v2_dir(group)}/cpu.stat has no usage_usec: kernel too old?")


def throttled_periods(layout: Layout, group: str) -> int:
    """CFS periods in which the kernel throttled the pod for hitting its CPU limit: proof
    that the limit is enforced (v1 `cpu.stat` on hybrid hosts, v2 `cpu.stat` otherwise)."""
    base = layout.v1_cpu_root / group if layout.v1_cpu_root else layout.v2_dir(group)
    for line in (base / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "nr_throttled":
            return int(value)
    raise RuntimeError(f"{base}/cpu.stat has no nr_throttled: is the cpu controller enabled?")


def join(layout: Layout, group: str, pid: int) -> None:
    """Move `pid` into every directory of the pod's cgroup."""
    for path in layout.limit_dirs(group):
        (path / "cgroup.procs").write_text(str(pid), encoding="utf-8")


def procs(layout: Layout, group: str) -> set[int]:
    """PIDs inside the group or any of its descendants (v2 tree)."""
    pids: set[int] = set()
    root = layout.v2_dir(group)
    if not root.is_dir():
        return pids
    for dirpath, _dirs, files in os.walk(root):
        if "cgroup.procs" in files:
            text = Path(dirpath, "cgroup.procs").read_text()
            pids.update(int(p) for p in text.split())
    return pids


def remove_tree(layout: Layout, group: str, timeout: float = 5.0) -> bool:
    """Remove the group's directories (deepest first) on every hierarchy; return whether any
    existed. Processes must be gone already; a busy cgroup is retried until `timeout`."""
    removed = False
    for top in layout.limit_dirs(group):
        if not top.is_dir():
            continue
        removed = True
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            _rmdir_retry(Path(dirpath), timeout)
    return removed


def _rmdir_retry(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except OSError as exc:
            # EBUSY: exiting tasks are still being reaped by the kernel.
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise RuntimeError(
                    f"cannot remove cgroup {path}: {exc.strerror}. Fix: stop the processes "
                    f"listed in {path}/cgroup.procs, then run the teardown again"
                ) from exc
            time.sleep(0.05)
