"""kmesh_lab.procstat: /proc parsing and CPU arithmetic (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kmesh_lab import lab, procstat

# /proc/PID/stat of a process whose name holds ") " - fields counted after the last ")".
STAT = "4242 (kmesh) node) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 12345 0 0"


def test_parse_stat_sums_utime_and_stime_after_the_last_paren() -> None:
    assert procstat.parse_stat(STAT, clk_tck=100) == pytest.approx(4.0)


def test_parse_stat_rejects_garbage_with_the_text() -> None:
    with pytest.raises(procstat.ProcError, match="unexpected /proc/PID/stat"):
        procstat.parse_stat("nonsense", clk_tck=100)


def test_parse_rss_reads_vmrss_in_bytes() -> None:
    status = "Name:\tpython3\nVmPeak:\t  9000 kB\nVmRSS:\t  165000 kB\nThreads:\t4\n"
    assert procstat.parse_rss(status) == 165000 * 1024
    assert procstat.parse_rss("Name:\tkthreadd\n") == 0


def test_cpu_between_is_percent_of_one_core_and_of_the_node() -> None:
    a = procstat.ProcSample(7, cpu_s=1.0, rss_bytes=1, monotonic=100.0)
    b = procstat.ProcSample(7, cpu_s=1.5, rss_bytes=1, monotonic=102.0)
    out = procstat.cpu_between(a, b, ncpu=2)
    assert out["cpu_s"] == pytest.approx(0.5)
    assert out["wall_s"] == pytest.approx(2.0)
    assert out["cpu_pct_core"] == pytest.approx(25.0)
    assert out["cpu_pct_node"] == pytest.approx(12.5)
    with pytest.raises(procstat.ProcError, match="different processes"):
        procstat.cpu_between(a, procstat.ProcSample(8, 2.0, 1, 103.0))


def test_read_of_this_process_has_rss_and_grows_in_cpu() -> None:
    first = procstat.read(os.getpid())
    sum(i * i for i in range(300_000))  # burn a little CPU
    second = procstat.read(os.getpid())
    assert first.rss_bytes > 1024 * 1024
    assert second.cpu_s >= first.cpu_s
    assert second.monotonic > first.monotonic


def test_read_of_a_missing_process_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(procstat.ProcError, match="has exited"):
        procstat.read(123, proc=tmp_path)


def test_pid_from_file_checks_the_start_time(tmp_path: Path) -> None:
    pidfile = tmp_path / "agent.pid"
    with pytest.raises(procstat.ProcError, match="start the agent"):
        procstat.pid_from_file(pidfile)
    me = os.getpid()
    pidfile.write_text(f"{me} {lab.process_start_time(me)}\n")
    assert procstat.pid_from_file(pidfile) == me
    pidfile.write_text(f"{me} 1\n")  # a reused PID: another start time
    with pytest.raises(procstat.ProcError):
        procstat.pid_from_file(pidfile)
