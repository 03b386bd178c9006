"""tools/fortio.sh without network: flag errors, and pass-through when fortio is on PATH."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from kmesh_lab import loadgen

WRAPPER = Path(__file__).resolve().parents[2] / "tools" / "fortio.sh"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WRAPPER), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["load", "-c", "0", "http://127.0.0.1:1/"], "-c"),
        (["load", "-c", "many", "http://127.0.0.1:1/"], "-c"),
        (["load", "-qps", "-5", "http://127.0.0.1:1/"], "-qps"),
        (["load", "-t", "0s", "http://127.0.0.1:1/"], "-t"),
        (["load", "-t", "ten", "http://127.0.0.1:1/"], "-t"),
        (["load", "-keepalive=maybe", "http://127.0.0.1:1/"], "-keepalive"),
        (["load", "-H", "nocolon", "http://127.0.0.1:1/"], "-H"),
        (["load", "-p", "50;99", "http://127.0.0.1:1/"], "-p"),
        (["load", "-bogus", "http://127.0.0.1:1/"], "-bogus"),
        (["load", "-c"], "-c needs a value"),
        (["load", "-c", "2"], "no URL"),
        (["load", "http://a/", "http://b/"], "more than one URL"),
        (["load", "-json", "/nonexistent-dir/x.json", "http://127.0.0.1:1/"], "-json"),
        (["server"], "server"),
    ],
)
def test_bad_flags_are_named(args: list[str], names: str) -> None:
    env = {**os.environ, "KMESH_LAB_LOADGEN": "wrk"}
    proc = run(*args, env=env)
    assert proc.returncode == 2
    assert names in proc.stderr
    assert proc.stdout == ""


FAKE_FORTIO = """#!/bin/sh
# Records its arguments and writes a minimal fortio JSON to the -json target.
echo "$@" > "$FAKE_ARGS"
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "-json" ]; then out=$2; fi
  shift
done
cat > "$out" <<'EOF'
{"ActualQPS": 10.0, "ActualDuration": 1000000000, "NumThreads": 2, "RequestedQPS": "max",
 "DurationHistogram": {"Count": 10, "Min": 0.001, "Max": 0.003, "Avg": 0.002, "StdDev": 0.0005,
 "Percentiles": [{"Percentile": 50, "Value": 0.002}]},
 "RetCodes": {"200": 10}, "SocketCount": 2}
EOF
"""


def test_fortio_on_path_is_passed_through(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "fortio"
    fake.write_text(FAKE_FORTIO)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    args_file = tmp_path / "args"
    out = tmp_path / "out.json"
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_ARGS": str(args_file),
        "KMESH_LAB_LOADGEN": "",
    }
    proc = run(
        "load",
        "-c",
        "2",
        "-qps",
        "0",
        "-t",
        "1s",
        "-a",
        "-payload-size",
        "100",
        "-sequential-warmup",
        "-json",
        str(out),
        "http://x/",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    passed = args_file.read_text().split()
    # Our flags reach fortio unchanged; only -json is redirected to a temp file.
    assert passed[:2] == ["load", "-json"]
    # fortio-only flags the wrk fallback would refuse are passed through too.
    assert passed[3:] == [
        "-c",
        "2",
        "-qps",
        "0",
        "-t",
        "1s",
        "-a",
        "-payload-size",
        "100",
        "-sequential-warmup",
        "http://x/",
    ]
    assert str(out) not in passed
    data = json.loads(out.read_text())
    assert data["Runner"] == "fortio"
    assert loadgen.parse(out).count == 10
    assert "fortio.sh[fortio]" in proc.stderr
    assert not list(tmp_path.glob(".fortio-sh.*"))
