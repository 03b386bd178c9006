"""Run a command inside a lab pod: its cgroups (CPU limit, BPF programs) and its netns.

    python -m kmesh_lab.podexec POD -- CMD [ARGS...]      (tools/podexec.sh wraps this)

The process joins the pod's cgroups first and then execs `ip netns exec`, so the command
keeps this PID and everything it forks is accounted and limited as the pod.
"""

from __future__ import annotations

import os
import sys

from kmesh_lab import cgroups, lab


def pod_entry(pod: str, state: dict) -> dict:
    try:
        return state["pods"][pod]
    except KeyError:
        known = ", ".join(sorted(state["pods"]))
        raise RuntimeError(f"no pod {pod!r} in this lab; pods are: {known}") from None


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: podexec.sh POD -- CMD [ARGS...]", file=sys.stderr)
        return 2
    pod, cmd = argv[0], argv[2:]
    try:
        entry = pod_entry(
            pod, lab.load_state(os.environ.get("KMESH_LAB_STATE", lab.DEFAULT_STATE_DIR))
        )
    except RuntimeError as exc:
        print(f"podexec: {exc}", file=sys.stderr)
        return 2
    cgroups.join(cgroups.detect(), entry["cgroup"], os.getpid())
    os.execvp("ip", ["ip", "netns", "exec", entry["netns"], *cmd])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
