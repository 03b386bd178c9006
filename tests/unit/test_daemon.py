"""Lab daemons: started once, restarted when their command changes, stopped by the PID
that was recorded with its start time (a reused PID is never signalled)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmesh_lab import daemon, lab

SLEEP = ["sleep", "30"]


@pytest.fixture
def state(tmp_path: Path):
    yield tmp_path
    for name in ("a",):
        daemon.stop(tmp_path, name)


def test_start_is_idempotent_and_stop_ends_it(state: Path) -> None:
    assert daemon.start(state, "a", SLEEP) is True
    pid = daemon.running(state, "a")
    assert pid and lab.alive(pid)
    assert daemon.start(state, "a", SLEEP) is False
    assert daemon.running(state, "a") == pid
    assert daemon.stop(state, "a") is True
    assert not lab.alive(pid)
    assert daemon.stop(state, "a") is False


def test_other_arguments_restart_it(state: Path) -> None:
    daemon.start(state, "a", SLEEP)
    first = daemon.running(state, "a")
    assert daemon.start(state, "a", ["sleep", "31"]) is True
    second = daemon.running(state, "a")
    assert second and second != first and not lab.alive(first)


def test_a_reused_pid_is_not_ours(state: Path) -> None:
    daemon.start(state, "a", SLEEP)
    pidfile = daemon.pidfile(state, "a")
    pid, _started = pidfile.read_text().split()
    pidfile.write_text(f"{pid} 1\n")  # same PID, another start time: someone else's
    assert daemon.running(state, "a") is None
    assert lab.pid_if_same(pidfile) == set()
    pidfile.write_text(f"{pid} {lab.process_start_time(int(pid))}\n")


def test_a_command_that_dies_at_start_is_reported(state: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with status"):
        daemon.start(state, "a", ["sh", "-c", "exit 3"], timeout=5)
