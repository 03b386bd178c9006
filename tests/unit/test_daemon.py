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


def test_the_error_quotes_what_this_start_logged(state: Path) -> None:
    die = ["sh", "-c", "echo 'cannot bind socket' >&2; exit 1"]
    with pytest.raises(RuntimeError, match=r"status 1 at start.*it said: cannot bind socket$"):
        daemon.start(state, "b", die, timeout=5)
    # a second failure quotes only its own output, not the earlier start's (same log file)
    with pytest.raises(RuntimeError) as err:
        daemon.start(state, "b", ["sh", "-c", "echo 'config error'; exit 1"], timeout=5)
    assert str(err.value).endswith("it said: config error") and "bind" not in str(err.value)
