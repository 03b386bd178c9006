"""CPU time and resident memory of one process, read from /proc (the agent's own cost).

    read(pid)          -> ProcSample (utime+stime of all its threads, VmRSS, when read)
    cpu_between(a, b)  -> {"cpu_s", "wall_s", "cpu_pct_core", "cpu_pct_node"}
    pid_from_file(p)   -> the PID in a lab PID file, if that process is still the one started

CPU % of one core = delta (utime + stime) / wall time * 100 (what `top` shows per process);
% of the node = that / number of CPUs. utime/stime count every thread of the process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from kmesh_lab import lab

CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProcError(RuntimeError):
    """The process is gone or its /proc files cannot be read."""


@dataclass(frozen=True)
class ProcSample:
    pid: int
    cpu_s: float  # utime + stime, seconds, all threads
    rss_bytes: int  # VmRSS
    monotonic: float  # time.monotonic() when read


def parse_stat(text: str, clk_tck: int = CLK_TCK) -> float:
    """utime + stime in seconds from the text of /proc/PID/stat.

    The command name (field 2) may hold spaces and parentheses, so fields are counted after
    the last ")": state is field 3, utime field 14, stime field 15.
    """
    try:
        rest = text.rsplit(")", 1)[1].split()
        utime, stime = int(rest[11]), int(rest[12])
    except (IndexError, ValueError) as exc:
        raise ProcError(f"unexpected /proc/PID/stat format: {text[:80]!r}") from exc
    return (utime + stime) / clk_tck


def parse_rss(text: str) -> int:
    """VmRSS in bytes from the text of /proc/PID/status (0 for a kernel thread)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            try:
                value = int(parts[1])
            except (IndexError, ValueError) as exc:
                raise ProcError(f"unexpected VmRSS line in /proc/PID/status: {line!r}") from exc
            unit = parts[2].lower() if len(parts) > 2 else "kb"
            if unit != "kb":
                raise ProcError(f"VmRSS in unit {parts[2]!r}, expected kB: {line!r}")
            return value * 1024
    return 0


def read(pid: int, proc: Path = Path("/proc")) -> ProcSample:
    try:
        stat = (proc / str(pid) / "stat").read_text()
        status = (proc / str(pid) / "status").read_text()
    except OSError as exc:
        raise ProcError(
            f"cannot read /proc/{pid} ({exc.strerror}): the process has exited; "
            f"look at its log in the lab's state dir (logs/) and start it again"
        ) from exc
    return ProcSample(pid, parse_stat(stat), parse_rss(status), time.monotonic())


def cpu_between(a: ProcSample, b: ProcSample, ncpu: int | None = None) -> dict[str, float]:
    """CPU the process used between two samples: seconds and percent of one core / the node."""
    if a.pid != b.pid:
        raise ProcError(f"samples of different processes ({a.pid} and {b.pid})")
    ncpu = ncpu or os.cpu_count() or 1
    wall = b.monotonic - a.monotonic
    cpu = max(0.0, b.cpu_s - a.cpu_s)
    core = cpu / wall * 100.0 if wall > 0 else 0.0
    return {
        "cpu_s": round(cpu, 6),
        "wall_s": round(wall, 6),
        "cpu_pct_core": core,
        "cpu_pct_node": core / ncpu,
    }


def pid_from_file(pidfile: Path) -> int:
    """The PID recorded in a lab PID file ("PID STARTTIME"), checked to be the same process."""
    pids = lab.pid_if_same(Path(pidfile))
    if not pids:
        raise ProcError(
            f"{pidfile} names no running process (missing, or the process it recorded has "
            f"exited): start the agent first (ansible-playbook playbooks/agent.yml)"
        )
    return next(iter(pids))
