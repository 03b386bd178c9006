"""Compile and load the eBPF programs in a short-lived child process; hand back their fds.

bcc links LLVM/clang into the process that compiles: ~100 MB of resident memory the agent
would carry for its whole life only to compile once. The child inherits the map fds (same
numbers, `pass_fds`), compiles each source (`bpf/sock_addr.c`, and with acceleration
`bpf/sockops.c` + `bpf/sk_msg.c`) against them, loads each program and sends the program
fds back over a socketpair (SCM_RIGHTS); the agent never imports bcc.

Run as `python -m kmesh_node.progload JSON` by `load_programs()` only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

COMPILE_TIMEOUT_S = 120.0
NO_ATTACH_TYPE = -1  # bcc's default: load without an expected attach type


@dataclass(frozen=True)
class Unit:
    """One C source and the programs to load from it: {hook: (function, attach type)};
    `prog_type` names a bcc.BPF program type constant (CGROUP_SOCK_ADDR, SOCK_OPS, ...)."""

    source: str
    prog_type: str
    hooks: Mapping[str, tuple[str, int]]


def load_programs(
    units: Sequence[Unit], include_dir: str, defines: Mapping[str, int]
) -> dict[str, int]:
    """{hook: program fd} for every hook of every unit, compiled in one child; the caller
    owns the fds. `defines` become -D flags; those naming fds must be open in this process."""
    hooks = {h: v for unit in units for h, v in unit.hooks.items()}
    if len(hooks) != sum(len(unit.hooks) for unit in units):
        raise ValueError("two units name the same hook")
    source = ", ".join(unit.source for unit in units)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spec = {
        "units": [
            {
                "source": unit.source,
                "prog_type": unit.prog_type,
                "hooks": {h: list(v) for h, v in unit.hooks.items()},
            }
            for unit in units
        ],
        "include_dir": include_dir,
        "defines": dict(defines),
        "sock": child.fileno(),
    }
    inherit = sorted({child.fileno(), *(v for k, v in defines.items() if k.startswith("KMN_FD_"))})
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kmesh_node.progload", json.dumps(spec)],
            pass_fds=inherit,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        child.close()
    try:
        parent.settimeout(COMPILE_TIMEOUT_S)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(parent, 65536, len(hooks))
        except (TimeoutError, OSError):
            msg, fds = b"", []
        _out, err = proc.communicate(timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(
            f"compiling {source} took over {COMPILE_TIMEOUT_S:.0f} s; is the machine overloaded?"
        ) from None
    finally:
        parent.close()
    if proc.returncode != 0 or len(fds) != len(hooks):
        for fd in fds:
            os.close(fd)
        tail = "\n".join(err.strip().splitlines()[-15:])
        raise RuntimeError(
            f"compiling/loading {source} failed (exit {proc.returncode}):\n{tail}\n"
            "check `kmesh-node preflight` (kernel headers at /lib/modules/$(uname -r)/build, "
            "python3-bpfcc)"
        )
    names = json.loads(msg)
    return dict(zip(names, fds, strict=True))


def _child(spec: dict) -> None:
    from bcc import BPF

    cflags = [f"-I{spec['include_dir']}"] + [f"-D{k}={v}" for k, v in spec["defines"].items()]
    names, fds, objects = [], [], []
    for unit in spec["units"]:
        bpf = BPF(src_file=unit["source"].encode(), cflags=cflags)
        objects.append(bpf)  # keeps the loaded programs' fds open until they are sent
        prog_type = getattr(BPF, unit["prog_type"])
        for hook, (func, attach_type) in unit["hooks"].items():
            fn = bpf.load_func(func.encode(), prog_type, attach_type=attach_type)
            names.append(hook)
            fds.append(fn.fd)
    sock = socket.socket(fileno=spec["sock"])
    socket.send_fds(sock, [json.dumps(names).encode()], fds)
    sock.close()


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
