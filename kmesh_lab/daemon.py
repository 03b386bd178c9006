"""Start and stop the lab's long-running processes (nginx in server pods, the agent).

A daemon is started once: its PID file records the PID and the kernel's start time of that
process, so a second start is a no-op while it runs, and a stop never signals a PID that was
reused by someone else. The command line is kept beside it: starting the same daemon with
other arguments (e.g. the agent with another --stress-loops) restarts it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kmesh_lab import lab

# A command that fails at once (bad flag, missing file) dies within this; catch it here.
SETTLE_S = 0.3


def pidfile(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "pids" / f"{name}.pid"


def argvfile(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / "pids" / f"{name}.argv"


def running(state_dir: Path, name: str) -> int | None:
    pids = lab.pid_if_same(pidfile(state_dir, name))
    return next(iter(pids)) if pids and lab.alive(next(iter(pids))) else None


def start(
    state_dir: Path,
    name: str,
    argv: list[str],
    pod: str | None = None,
    ready_port: int | None = None,
    timeout: float = 10.0,
) -> bool:
    """Start `argv` (inside `pod` when given) unless it already runs; return whether started.

    With `ready_port`, wait until something listens on that TCP port in the pod's netns.
    Running with other arguments or in another pod, it is stopped and started again."""
    wanted = json.dumps({"argv": argv, "pod": pod})
    if running(state_dir, name):
        recorded = argvfile(state_dir, name)
        if recorded.is_file() and recorded.read_text() == wanted:
            return False
        stop(state_dir, name)
    state_dir = Path(state_dir)
    log = state_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile(state_dir, name).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "kmesh_lab.podexec", pod, "--", *argv] if pod else argv
    env = {**os.environ, "KMESH_LAB_STATE": str(state_dir)}
    with open(log, "ab") as out:
        logged_before = out.tell()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=env
        )
    # Record it at once, so a teardown finds it even if readiness never comes.
    pidfile(state_dir, name).write_text(f"{proc.pid} {lab.process_start_time(proc.pid)}\n")
    argvfile(state_dir, name).write_text(wanted)
    probe = _listen_probe(pod, ready_port, state_dir) if ready_port is not None else []
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if proc.poll() is not None:
            said = _tail(log, logged_before)
            raise RuntimeError(
                f"{name} exited with status {proc.returncode} at start; see {log}"
                + (f"; it said: {said}" if said else "")
            )
        settled = time.monotonic() - started >= SETTLE_S
        if settled and (ready_port is None or _listening(probe)):
            return True
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{name} did not listen on port {ready_port} within {timeout:.0f} s; see {log}"
            )
        time.sleep(0.05)


def _tail(log: Path, offset: int, limit: int = 600) -> str:
    """The end of what this start wrote to the log (the why of a failed start: the caller's
    error is often all that survives, e.g. in CI after the teardown removed the logs)."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return " ".join(text.split())[-limit:]


def _listen_probe(pod: str | None, port: int, state_dir: Path) -> list[str]:
    """The `ss` command that lists listeners on `port` (in the pod's netns when given)."""
    netns = ["-N", lab.load_state(state_dir)["pods"][pod]["netns"]] if pod else []
    return ["ss", *netns, "-Hltn", f"sport = :{port}"]


def _listening(probe: list[str]) -> bool:
    return bool(subprocess.run(probe, capture_output=True, text=True).stdout.strip())


def stop(state_dir: Path, name: str, timeout: float = 5.0) -> bool:
    """SIGTERM the daemon (SIGKILL after `timeout`); return whether it was running."""
    pid = running(state_dir, name)
    pidfile(state_dir, name).unlink(missing_ok=True)
    argvfile(state_dir, name).unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while lab.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if lab.alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True
