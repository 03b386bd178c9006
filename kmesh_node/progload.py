"""Compile and load the eBPF programs in a short-lived child process; hand back their fds.

bcc links LLVM/clang into the process that compiles: ~100 MB of resident memory the agent
would carry for its whole life only to compile once. The child inherits the map fds (same
numbers, `pass_fds`), compiles `bpf/sock_addr.c` against them, loads each program and sends
the program fds back over a socketpair (SCM_RIGHTS); the agent never imports bcc.

Run as `python -m kmesh_node.progload JSON` by `load_programs()` only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping

COMPILE_TIMEOUT_S = 120.0


def load_programs(
    source: str, include_dir: str, defines: Mapping[str, int], hooks: Mapping[str, tuple[str, int]]
) -> dict[str, int]:
    """{hook: program fd} for `hooks` ({hook: (function, attach type)}); the caller owns the
    fds. `defines` become -D flags; those naming fds must be open in this process."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spec = {
        "source": source,
        "include_dir": include_dir,
        "defines": dict(defines),
        "hooks": {h: list(v) for h, v in hooks.items()},
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
    bpf = BPF(src_file=spec["source"].encode(), cflags=cflags)
    names, fds = [], []
    for hook, (func, attach_type) in spec["hooks"].items():
        fn = bpf.load_func(func.encode(), BPF.CGROUP_SOCK_ADDR, attach_type=attach_type)
        names.append(hook)
        fds.append(fn.fd)
    sock = socket.socket(fileno=spec["sock"])
    socket.send_fds(sock, [json.dumps(names).encode()], fds)
    sock.close()


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
