"""Shared by the memory and scaling testinfra checks: their latest results file and the
agent's services compared with the manifests it watches (the lab as before the suite).

Environment overrides for a lab with other names (as `-e` gives the playbooks):
KMESH_LAB_STATE (state dir), KMESH_LAB_RESULTS (results root), KMESH_LAB_METRICS (the
agent's HOST:PORT)."""

from __future__ import annotations

import json
import os
import statistics
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kmesh_lab import agentsample, servicestep

from .conftest import REPO, STATE


def state_dir() -> Path:
    return Path(os.environ.get("KMESH_LAB_STATE", STATE.parent))


def latest_results(suite: str) -> dict[str, dict[str, Any]]:
    root = Path(os.environ.get("KMESH_LAB_RESULTS", REPO / "results"))
    runs = sorted(root.glob(f"*/{suite}.json"), key=lambda p: p.stat().st_mtime)
    assert runs, f"no {suite}.json under {root}: run `ansible-playbook site.yml --tags {suite}`"
    doc = json.loads(runs[-1].read_text())
    assert doc["suite"] == suite
    return {r["scenario"]: r for r in doc["records"]}


def newest_run_records(suite: str) -> dict[str, dict[str, Any]]:
    """The records of `suite` in the newest run under the results root; skips the calling
    tests when that run did not include the suite (a converge without it)."""
    root = Path(os.environ.get("KMESH_LAB_RESULTS", REPO / "results"))
    runs = [p for p in root.glob("*") if p.is_dir()] if root.is_dir() else []
    run = max(runs, key=lambda p: p.stat().st_mtime) if runs else None
    if run is None or not (run / f"{suite}.json").is_file():
        pytest.skip(f"the newest run ({run}) did not include {suite}")
    doc = json.loads((run / f"{suite}.json").read_text())
    assert doc["suite"] == suite
    return {r["scenario"]: r for r in doc["records"]}


def agent_services() -> int:
    address = os.environ.get("KMESH_LAB_METRICS", "127.0.0.1:15020")
    body = urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode()
    return int(agentsample.parse_metrics(body)["kmesh_node_services"])


def manifests() -> Path:
    path = state_dir() / "manifests"
    assert path.is_dir(), f"{path} is missing: start the agent (playbooks/agent.yml)"
    return path


def assert_lab_as_before(prefix: str) -> None:
    """No manifest of the suite is left, and the agent holds exactly the services of the
    manifests that remain (its base services)."""
    mdir = manifests()
    assert servicestep.suite_files(mdir, prefix) == [], f"{prefix} manifests left in {mdir}"
    assert agent_services() == servicestep.base_services(mdir)


def median(record: dict[str, Any], key: str) -> float:
    values = [s[key] for s in record["samples"]]
    assert values, (record["scenario"], key)
    return statistics.median(values)


def assert_memory_sample_is_physical(name: str, sample: dict[str, Any]) -> None:
    """Bytes and counts are never negative; the parts never exceed the whole."""
    counted = ("_bytes", "_s", "entries", "maps", "services", "resizes")
    for key, value in sample.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key.endswith(counted):
            assert value >= 0, (name, key, value)
    assert sample["bpf_bytes"] == sample["bpf_maps_bytes"] + sample["bpf_programs_bytes"], name
    assert 0 < sample["bpf_inner_maps_bytes"] < sample["bpf_maps_bytes"], name
    # the gadget sees at most what exists; what it cannot see is the rest
    assert 0 < sample["gadget_distinct_bytes"] <= sample["bpf_maps_bytes"], name
    assert (
        sample["gadget_distinct_bytes"] + sample["gadget_invisible_bytes"]
        == sample["bpf_maps_bytes"]
    ), name
    assert sample["agent_rss_bytes"] > 1024 * 1024, name
    by_name = sample["maps_by_name"]
    assert sum(g["memlock_bytes"] for g in by_name.values()) == sample["bpf_maps_bytes"], name
