"""The CPU suite's app cgroups: the "App A" instances of seeds 000/001, with their CPU limits.

    python -m kmesh_lab.cpugroups ensure --state-dir D --group NAME=MILLICORES [...]
    python -m kmesh_lab.cpugroups remove --state-dir D
    python -m kmesh_lab.cpugroups list   --state-dir D
    python -m kmesh_lab.cpugroups exec   --state-dir D --pod POD --group NAME -- CMD [ARGS...]

Each instance is a pod-level cgroup of its own, `<prefix>/cpu-<name>`, beside the lab's pods
(so the agent, attached to the lab's cgroup2 root, rewrites its connects, and a limit on it
is a pod limit), with a CPU limit in millicores (0 = none). A load runs in one with
`python -m kmesh_lab.cpugroups exec --pod POD --group NAME -- CMD`: what tools/podexec.sh
does (join the cgroups, then `ip netns exec` the pod's namespace -- in that order, because
`ip netns exec` remounts /sys and hides the cgroup trees), with the instance's cgroup in
place of the pod's. Several instances may share one pod's network namespace. The
lab's own pods and their limits are never touched, so restoring the lab after the suite is
removing these groups (`remove`), which also the lab teardown does (same prefix).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kmesh_lab import cgroups, lab, podexec

GROUP_PREFIX = "cpu-"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(
            f"instance name {name!r} is not usable: use 1-31 lowercase letters, digits and "
            "dashes (e.g. app-0, probe)"
        )
    return name


def group_path(prefix: str, name: str) -> str:
    """The cgroup (relative to each hierarchy's root) of instance `name`."""
    return f"{prefix}/{GROUP_PREFIX}{check_name(name)}"


def existing(layout: cgroups.Layout, prefix: str) -> list[str]:
    """Names of the suite's instances present in the v2 tree."""
    root = layout.v2_dir(prefix)
    if not root.is_dir():
        return []
    return sorted(
        p.name[len(GROUP_PREFIX) :]
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(GROUP_PREFIX)
    )


def ensure(
    layout: cgroups.Layout, prefix: str, wanted: Mapping[str, int], prune: bool = True
) -> dict[str, bool]:
    """Create each instance with its limit; with `prune`, remove instances not wanted.

    Returns {name: changed}. Limits are applied where the kernel enforces them (v2 cpu.max
    or v1 cpu.cfs_quota_us, see kmesh_lab.cgroups.ensure_group).
    """
    if not layout.v2_dir(prefix).is_dir():
        raise RuntimeError(
            f"{layout.v2_dir(prefix)} does not exist: the lab with prefix {prefix!r} is not up. "
            "Fix: ansible-playbook playbooks/lab.yml (with the same netns_lab_prefix)"
        )
    changed: dict[str, bool] = {}
    for name, millicores in wanted.items():
        m = cgroups.parse_millicores(millicores, f"CPU limit of instance {name}")
        changed[name] = cgroups.ensure_group(layout, group_path(prefix, name), m)
    if prune:
        for name in existing(layout, prefix):
            if name not in wanted:
                changed[name] = remove(layout, prefix, [name])[name]
    return changed


def remove(
    layout: cgroups.Layout, prefix: str, names: Sequence[str] | None = None
) -> dict[str, bool]:
    """Remove the instances (all of them by default); refuse while processes are inside."""
    out: dict[str, bool] = {}
    for name in existing(layout, prefix) if names is None else names:
        group = group_path(prefix, name)
        busy = cgroups.procs(layout, group)
        if busy:
            raise RuntimeError(
                f"cgroup {group} still holds processes {sorted(busy)}: a load is still "
                "running. Fix: wait for it to end (loads are bounded by -t), then run "
                "`python -m kmesh_lab.cpugroups remove` again"
            )
        out[name] = cgroups.remove_tree(layout, group)
    return out


def limits(layout: cgroups.Layout, prefix: str) -> dict[str, int]:
    """{instance: CPU limit in millicores as the kernel holds it (0 = none)}."""
    return {n: cgroups.limit_of(layout, group_path(prefix, n)) for n in existing(layout, prefix)}


def join_and_exec(
    layout: cgroups.Layout, state: Mapping[str, Any], pod: str, name: str, argv: Sequence[str]
) -> None:
    """Move this process into the instance's cgroups, then exec `argv` in the pod's network
    namespace (never returns)."""
    netns = podexec.pod_entry(pod, dict(state))["netns"]
    group = group_path(state["prefix"], name)
    if not layout.v2_dir(group).is_dir():
        raise RuntimeError(
            f"instance {name!r} does not exist ({layout.v2_dir(group)}). Fix: create it with "
            f"`python -m kmesh_lab.cpugroups ensure --group {name}=MILLICORES`"
        )
    cgroups.join(layout, group, os.getpid())
    os.execvp("ip", ["ip", "netns", "exec", netns, *argv])


def parse_group_arg(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--group {text!r}: write NAME=MILLICORES, e.g. app-0=250 (0 = no limit)")
    return check_name(name), cgroups.parse_millicores(value, f"--group {text}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kmesh_lab.cpugroups", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("KMESH_LAB_STATE", lab.DEFAULT_STATE_DIR)),
        help="the lab's state dir (lab.json)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ens = sub.add_parser("ensure", help="create instances with limits, remove the others")
    ens.add_argument("--group", action="append", default=[], help="NAME=MILLICORES")
    ens.add_argument("--keep-others", action="store_true", help="do not remove other instances")
    sub.add_parser("remove", help="remove every instance")
    sub.add_parser("list", help="print {instance: millicores} as JSON")
    ex = sub.add_parser("exec", help="run CMD in a pod's netns and an instance's cgroup")
    ex.add_argument("--pod", required=True, help="lab pod whose network namespace to use")
    ex.add_argument("--group", required=True, help="instance name")
    ex.add_argument("argv", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import json

    args = _parser().parse_args(argv)
    try:
        state = lab.load_state(args.state_dir)
        prefix = state["prefix"]
        layout = cgroups.detect()
        if args.command == "ensure":
            wanted = dict(parse_group_arg(g) for g in args.group)
            changed = ensure(layout, prefix, wanted, prune=not args.keep_others)
            print(json.dumps({"changed": any(changed.values()), "groups": limits(layout, prefix)}))
        elif args.command == "remove":
            changed = remove(layout, prefix)
            print(json.dumps({"changed": any(changed.values()), "removed": sorted(changed)}))
        elif args.command == "list":
            print(json.dumps(limits(layout, prefix)))
        else:
            cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not cmd:
                raise ValueError("exec needs a command: exec --group NAME -- CMD [ARGS...]")
            join_and_exec(layout, state, args.pod, args.group, cmd)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"cpugroups: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
