"""The new-connection rate generator (tools/connrate.c): build it, run it, read its JSON.

tools/connrate.c is netperf's TCP_CC (connect + close, no data) as a small C program:
netperf is non-free in Debian, and a Python loop's own cost per connection would dilute
what the data planes add to it. It is built on first use with the host's gcc
(roles/host_setup installs it) and rebuilt when the source is newer than the binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parents[1] / "tools" / "connrate.c"
BINARY = "connrate"
REQUIRED = ("target", "workers", "duration_s", "connections", "errors", "connections_per_s")


class ConnrateError(RuntimeError):
    """The generator could not be built or its output read; the message names the fix."""


def build(dest_dir: Path, source: Path = SOURCE) -> Path:
    """The binary in dest_dir, compiled when missing or older than the source."""
    dest = dest_dir / BINARY
    if dest.is_file() and dest.stat().st_mtime >= source.stat().st_mtime:
        return dest
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise ConnrateError(
            f"no C compiler to build {source.name}: install gcc and libc6-dev "
            "(roles/host_setup does, or `apt-get install gcc libc6-dev`)"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".{os.getpid()}.tmp")
    argv = [cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(tmp), str(source)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ConnrateError(f"building {source} failed: {proc.stderr.strip()[-800:]}")
    tmp.replace(dest)  # atomic: a concurrent reader sees the old binary or the new one
    return dest


def argv(binary: Path, target: str, seconds: int, workers: int, timeout_ms: int) -> list[str]:
    limits = ["-t", str(seconds), "-c", str(workers), "-timeout", str(timeout_ms)]
    return [str(binary), *limits, target]


def parse(text: str) -> dict[str, Any]:
    """The generator's JSON (its last stdout line), checked for the fields the suites use."""
    lines = text.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError as exc:
        raise ConnrateError(f"connrate printed no JSON ({exc}): {text[-300:]!r}") from exc
    if not isinstance(data, dict) or data.get("tool") != BINARY:
        raise ConnrateError(f"connrate printed no result object: {text[-300:]!r}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ConnrateError(f"connrate's result lacks {missing}: {text[-300:]!r}")
    return data
