"""preflight on fake hosts: a fake root tree for files, stub probes for the kernel."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from kmesh_node import preflight

HYBRID_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0
bpf /sys/fs/bpf bpf rw 0 0
"""
V2_MOUNTS = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\nbpf /sys/fs/bpf bpf rw 0 0\n"


def ok_probe() -> tuple[bool, str]:
    return True, "fine"


def bad_probe() -> tuple[bool, str]:
    return False, "broken"


def make_host(
    root: Path,
    mounts: str = HYBRID_MOUNTS,
    release: str = "6.18.1-test",
    headers_of: str | None = "6.1.0-56-amd64",
    controllers: str = "memory pids",
    **probes,
) -> preflight.Host:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mounts").write_text(mounts)
    (root / "sys/kernel/btf").mkdir(parents=True)
    (root / "sys/kernel/btf/vmlinux").write_text("")
    for point in ("sys/fs/cgroup/unified", "sys/fs/cgroup"):
        (root / point).mkdir(parents=True, exist_ok=True)
    (root / "sys/fs/cgroup/unified/cgroup.controllers").write_text(controllers + "\n")
    (root / "sys/fs/cgroup/cgroup.controllers").write_text(controllers + "\n")
    if headers_of is not None:
        tree = root / "usr/src/linux-headers-x"
        (tree / "include/generated").mkdir(parents=True)
        (tree / "include/generated/utsrelease.h").write_text(
            f'#define UTS_RELEASE "{headers_of}"\n'
        )
        (root / f"lib/modules/{release}").mkdir(parents=True)
        (root / f"lib/modules/{release}/build").symlink_to(tree)
    defaults = {
        "bpf_syscall": ok_probe,
        "cgroup_bpf": lambda cg2: (True, f"attach ok at {cg2}"),
        "sockmap": ok_probe,
        "stats": ok_probe,
        "bcc": ok_probe,
        "which": lambda name: f"/usr/sbin/{name}",
    }
    defaults.update(probes)
    return preflight.Host(root=root, release=release, euid=0, **defaults)


def by_name(checks: list[preflight.Check]) -> dict[str, preflight.Check]:
    return {c.name: c for c in checks}


def test_hybrid_host_with_fallback_headers(tmp_path: Path) -> None:
    checks = by_name(preflight.run_checks(make_host(tmp_path), "/sys/fs/bpf/kmesh_node"))
    assert all(c.ok for c in checks.values())
    assert "/sys/fs/cgroup/unified" in checks["cgroup2"].detail
    assert "v1" in checks["cgroup2"].detail and "hybrid" in checks["cgroup2"].detail
    assert "distro fallback" in checks["kernel_headers"].detail
    assert "6.1.0-56-amd64" in checks["kernel_headers"].detail
    assert checks["cgroup_bpf"].detail == "attach ok at /sys/fs/cgroup/unified"


def test_pure_v2_host_with_own_headers(tmp_path: Path) -> None:
    host = make_host(
        tmp_path, mounts=V2_MOUNTS, release="6.8.0-1", headers_of="6.8.0-1", controllers="cpu io"
    )
    checks = by_name(preflight.run_checks(host, "/sys/fs/bpf/kmesh_node"))
    assert "cpu controller on v2" in checks["cgroup2"].detail
    assert checks["kernel_headers"].detail.startswith("running kernel's headers")


def test_missing_items_name_their_fix_and_fail(tmp_path: Path, capsys) -> None:
    host = make_host(
        tmp_path,
        mounts="cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",  # no bpffs
        release="5.4.0-old",
        headers_of=None,
        bcc=bad_probe,
        which=lambda name: None,
    )
    rc = preflight.preflight_command(argparse.Namespace(json=True, bpffs="/sys/fs/bpf/k"), host)
    assert rc == 1
    body = json.loads(capsys.readouterr().out)
    assert body["ok"] is False
    checks = {c["name"]: c for c in body["checks"]}
    for name in ("kernel", "bpffs", "kernel_headers", "bcc"):
        assert checks[name]["status"] == "missing", name
        assert checks[name]["fix"], name
    assert "mount -t bpf" in checks["bpffs"]["fix"]
    assert "linux-headers-5.4.0-old" in checks["kernel_headers"]["fix"]
    assert "python3-bpfcc" in checks["bcc"]["fix"]
    assert checks["bpftool"]["status"] == "warn"  # optional: does not fail preflight


def test_optional_items_do_not_fail(tmp_path: Path, capsys) -> None:
    host = make_host(tmp_path, sockmap=bad_probe, stats=bad_probe, which=lambda n: None)
    rc = preflight.preflight_command(argparse.Namespace(json=False, bpffs="/sys/fs/bpf/x"), host)
    out = capsys.readouterr().out
    assert rc == 0
    assert "warn" in out and "fix: CONFIG_BPF_STREAM_PARSER" in out
    assert "preflight: ok" in out


def test_no_cgroup2_is_missing(tmp_path: Path) -> None:
    host = make_host(tmp_path, mounts="bpf /sys/fs/bpf bpf rw 0 0\n")
    checks = by_name(preflight.run_checks(host, "/sys/fs/bpf/x"))
    assert checks["cgroup2"].status == "missing"
    assert checks["cgroup_bpf"].status == "missing"
    assert "mount -t cgroup2" in checks["cgroup2"].fix


def test_pins_outside_bpffs_are_missing(tmp_path: Path) -> None:
    checks = by_name(preflight.run_checks(make_host(tmp_path), "/tmp/pins"))
    assert checks["bpffs"].status == "missing"
    assert "/sys/fs/bpf" in checks["bpffs"].detail


def test_not_root_is_missing(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    host.euid = 1000
    assert by_name(preflight.run_checks(host, "/sys/fs/bpf/x"))["root"].status == "missing"


@pytest.mark.parametrize(
    ("release", "version"), [("6.18.44-fc-v669", (6, 18)), ("5.10.0", (5, 10))]
)
def test_kernel_version(release: str, version: tuple[int, int]) -> None:
    assert preflight.kernel_version(release) == version


def test_kernel_version_garbage() -> None:
    with pytest.raises(RuntimeError, match=r"MAJOR\.MINOR"):
        preflight.kernel_version("weird")
