"""A bad inventory variable fails before anything is created, naming the variable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.root
PREFIX = "kmtestbad"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("netns_lab_pods", "-1"),
        ("netns_lab_clients", "0"),
        ("netns_lab_client_cpu_m", "abc"),
        ("netns_lab_server_cpu_m", "-250"),
        ("netns_lab_pod_cidr", "not-a-cidr"),
        ("lab_profile", "huge"),
    ],
)
def test_bad_variable_is_named_and_nothing_is_created(variable: str, value: str) -> None:
    proc = subprocess.run(
        [
            str(REPO / ".venv/bin/ansible-playbook"),
            "site.yml",
            "--tags",
            "lab",
            "-e",
            f"netns_lab_prefix={PREFIX}",
            "-e",
            f"lab_state_dir=/run/{PREFIX}",
            "-e",
            f"{variable}={value}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert variable in proc.stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert PREFIX not in netns
    assert not Path(f"/run/{PREFIX}").exists()
