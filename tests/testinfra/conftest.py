"""testinfra checks of what the lab's roles left on this host (run by molecule verify, or
`pytest tests/testinfra --hosts=local://` after `make lab`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

STATE = Path("/run/kmesh-lab/lab.json")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def lab() -> dict:
    assert STATE.is_file(), f"{STATE} is missing: bring the lab up first (make lab)"
    return json.loads(STATE.read_text())


@pytest.fixture(scope="session")
def pods(lab: dict) -> dict:
    return lab["pods"]
