"""roles/host_setup on the real host: the kernel-headers fallback, exercised for a kernel
release that has no headers package (a fake one, so the running kernel's link is untouched)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.root


def play(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "playbooks/host.yml", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_headers_fall_back_to_the_distro_with_a_warning() -> None:
    release = f"0.0.0-kmtest-{uuid.uuid4().hex[:6]}"
    moddir = Path("/lib/modules") / release
    try:
        first = play("-e", f"host_setup_kernel_release={release}")
        assert first.returncode == 0, first.stdout[-3000:]
        build = moddir / "build"
        assert build.is_symlink()
        target = build.resolve()
        assert target.parent == Path("/usr/src") and target.name.startswith("linux-headers-")
        assert (target / "Makefile").is_file()
        assert (moddir / "source").resolve().is_dir()
        assert "WARNING: no kernel headers are packaged" in first.stdout
        assert release in first.stdout
        # Idempotent: the second run changes nothing and still says so.
        second = play("-e", f"host_setup_kernel_release={release}")
        assert second.returncode == 0
        assert "changed=0" in second.stdout
        assert "WARNING: no kernel headers are packaged" in second.stdout
    finally:
        shutil.rmtree(moddir, ignore_errors=True)
