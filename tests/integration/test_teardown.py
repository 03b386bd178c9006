"""playbooks/teardown.yml removes exactly what the lab created, and is safe to run twice.

The lab is brought up under a private prefix, state dir, bpffs dir and pod CIDR so that the
default lab (molecule's) is not touched."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from kmesh_lab import cgroups, lab

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.root


def play(playbook: str, extra: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), playbook, *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def leftovers(prefix: str, state_dir: Path, bpffs: Path) -> list[str]:
    layout = cgroups.detect()
    found = [
        f"netns {n}"
        for n in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout.split()
        if n.startswith(f"{prefix}-")
    ]
    found += [f"cgroup {d}" for d in layout.limit_dirs(prefix) if d.exists()]
    found += [f"state {state_dir}"] if state_dir.exists() else []
    found += [f"pins {bpffs}"] if bpffs.exists() else []
    return found


def test_teardown_removes_everything_and_is_safe_twice() -> None:
    tag = uuid.uuid4().hex[:4]
    prefix, state_dir = f"kmtest{tag}", Path(f"/run/kmtest{tag}")
    bpffs = Path(f"/sys/fs/bpf/kmtest{tag}")
    extra = [
        "-e",
        f"netns_lab_prefix={prefix}",
        "-e",
        f"lab_state_dir={state_dir}",
        "-e",
        f"kmesh_node_bpffs={bpffs}",
        "-e",
        "kmesh_node_metrics=127.0.0.1:15039",
        "-e",
        "netns_lab_pod_cidr=10.247.0.0/24",
    ]
    try:
        up = play("site.yml", [*extra, "--tags", "lab,agent"])
        assert up.returncode == 0, up.stdout[-3000:]
        state = lab.load_state(state_dir)
        pids = {int(p.read_text().split()[0]) for p in (state_dir / "pids").glob("*.pid")}
        assert len(pids) >= 3  # nginx in each server pod, and the agent
        assert leftovers(prefix, state_dir, bpffs), "the lab did not come up"
        assert state["pods"]

        for _ in range(2):
            down = play("playbooks/teardown.yml", extra)
            assert down.returncode == 0, down.stdout[-3000:]
            assert leftovers(prefix, state_dir, bpffs) == []
            assert not [p for p in pids if lab.alive(p)]
        assert "changed=0" in down.stdout  # the second run found nothing to do
    finally:
        play("playbooks/teardown.yml", extra)
