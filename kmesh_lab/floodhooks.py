"""Hook and unhook kube-proxy's rules in a namespace in O(1): only the jumps from the
built-in chains to KUBE-* chains are removed or restored; every KUBE-* chain stays loaded.

Why not kmesh_lab.dataplane: it puts the lab into one plane by applying or removing a
plane's whole ruleset, which for the flood's ~100k rules takes minutes per switch. The flood
keeps the rules loaded and switches only the hooks (the rest is then unreachable, as if a
kube-proxy replacement had taken over), so A/B pairs can interleave. What is hooked is read
back from the kernel after every switch (`iptables -S <built-in chain>`: a few rules, not
the whole ruleset).
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from kmesh_lab import kube_proxy as kp

# The built-in chains kube-proxy (and kubelet) hook into, per table.
BUILTIN = {"nat": ("PREROUTING", "OUTPUT", "POSTROUTING"), "filter": ("INPUT", "FORWARD", "OUTPUT")}


class HookError(RuntimeError):
    """The hooks could not be read or changed; the message names the fix."""


def _run(netns: str, argv: list[str], stdin: str | None = None) -> str:
    cmd = ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise HookError(
            f"`{' '.join(cmd)}` failed (rc {proc.returncode}): {proc.stderr.strip()[-800:]}; "
            f"is the lab's node namespace {netns} up and iptables installed?"
        )
    return proc.stdout


def _target(words: list[str]) -> str:
    return words[words.index("-j") + 1] if "-j" in words[:-1] else ""


def read_jumps(netns: str, backend: str = "nft") -> dict[str, list[str]]:
    """table -> `-A CHAIN ...` rules of the built-in chains that jump to a KUBE-* chain."""
    out: dict[str, list[str]] = {}
    for table, chains in BUILTIN.items():
        for chain in chains:
            text = _run(netns, [f"iptables-{backend}", "-w", "-t", table, "-S", chain])
            for line in text.splitlines():
                words = shlex.split(line)
                if words[:1] == ["-A"] and _target(words).startswith("KUBE-"):
                    out.setdefault(table, []).append(line)
    return out


def summary(jumps: dict[str, list[str]]) -> dict[str, Any]:
    """Counts of hooked jumps, as recorded with every sample."""
    services = sum(
        1
        for lines in jumps.values()
        for line in lines
        if _target(shlex.split(line)) == kp.KUBE_SERVICES
    )
    nat_services = sum(
        1 for line in jumps.get("nat", []) if _target(shlex.split(line)) == kp.KUBE_SERVICES
    )
    return {
        "hooked_jumps": sum(len(v) for v in jumps.values()),
        "hooked_kube_services_jumps": services,
        "hooked_nat_kube_services_jumps": nat_services,
    }


def unhook(netns: str, backend: str = "nft") -> dict[str, Any]:
    """Delete every jump from a built-in chain to KUBE-* (one restore), then read back."""
    jumps = read_jumps(netns, backend)
    if jumps:
        text = "".join(
            f"*{table}\n" + "".join(f"-D{line[2:]}\n" for line in lines) + "COMMIT\n"
            for table, lines in sorted(jumps.items())
        )
        _run(netns, [f"iptables-{backend}-restore", "-w", "--noflush"], stdin=text)
    return summary(read_jumps(netns, backend))


def hook(netns: str, backend: str = "nft") -> dict[str, Any]:
    """Insert kube-proxy's jumps that are missing (kp.JUMPS, in kube-proxy's order), then read
    back. Inserted at the top of each built-in chain, as kube-proxy's EnsureRule(Prepend)."""
    jumps = read_jumps(netns, backend)
    missing: dict[str, list[str]] = {}
    # kube-proxy prepends in order, so the last of a chain's jumps ends up first; insert in
    # reverse so the chain reads in kube-proxy's order.
    for j in reversed(kp.JUMPS):
        if not kp.has_jump(jumps.get(j.table, []), j):
            missing.setdefault(j.table, []).append(f"-I {j.src} {j.args()}")
    if missing:
        text = "".join(
            f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
            for table, lines in sorted(missing.items())
        )
        _run(netns, [f"iptables-{backend}-restore", "-w", "--noflush"], stdin=text)
    return summary(read_jumps(netns, backend))


def kube_services_position(save_text: str, service: str) -> dict[str, int] | None:
    """Where the nat KUBE-SERVICES rule of `service` (ns/name:port) sits, from `iptables-save`:
    {position (1-based), rules (in the chain)}; None when it is not there."""
    table = ""
    position = 0
    found = 0
    marker = f'"{service} cluster IP"'
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat" and line.startswith(f"-A {kp.KUBE_SERVICES} "):
            position += 1
            if not found and marker in line:
                found = position
    return {"position": found, "rules": position} if found else None
