"""What roles/suite_scaling leaves: results/<run_id>/suite_scaling.json with every step of
seed 002's procedure (up in batches, all down, up again) measured once per cycle, figures
physically sane (entries and true memory grow batch by batch, resizes never go back within a
cycle, new services answered through their VIPs), and the agent back to its own services."""

from __future__ import annotations

import pytest

from .services_state import (
    assert_lab_as_before,
    assert_memory_sample_is_physical,
    latest_results,
    median,
)


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    return latest_results("suite_scaling")


def _phase(records: dict[str, dict], phase: str) -> list[dict]:
    found = [r for r in records.values() if r["params"]["phase"] == phase]
    return sorted(found, key=lambda r: r["params"]["services"])


def test_every_step_of_the_procedure_has_one_sample_per_cycle(records: dict[str, dict]) -> None:
    up, again = _phase(records, "up"), _phase(records, "up_again")
    assert up and len(up) == len(again)
    batch = up[0]["params"]["batch"]
    assert [r["params"]["services"] for r in up] == [batch * (i + 1) for i in range(len(up))]
    assert [r["params"]["services"] for r in again] == [r["params"]["services"] for r in up]
    assert "down.services=0" in records
    assert len(records) == 2 * len(up) + 1
    for name, rec in records.items():
        assert len(rec["samples"]) == rec["expected_samples"] >= 3, name
        assert sorted(s["repetition"] for s in rec["samples"]) == list(
            range(1, rec["expected_samples"] + 1)
        ), name
        assert rec["published"] and "scaling.setup" in rec["experiments"], name


def test_figures_are_physical_and_services_answered(records: dict[str, dict]) -> None:
    for name, rec in records.items():
        for sample in rec["samples"]:
            assert_memory_sample_is_physical(name, sample)
            assert sample["agent_change_cpu_s"] >= 0 and sample["sync_s"] >= 0
            assert 0 <= sample["agent_idle_cpu_pct_node"] <= 100.5
            if rec["params"]["phase"] == "down":
                assert "answer_max_s" not in sample
                continue
            assert sample["answered_vips"] == sample["probed_vips"] > 0, name
            assert 0 <= sample["answer_floor_s"] <= sample["answer_p50_s"]
            assert sample["answer_p50_s"] <= sample["answer_max_s"], name


def test_entries_and_true_memory_grow_with_every_batch(records: dict[str, dict]) -> None:
    for phase in ("up", "up_again"):
        steps = _phase(records, phase)
        # Live frontends grow with every batch; the kernel's entries (ARRAY frontend shards
        # hold their capacity) step up and never shrink while services are added.
        frontends = [median(r, "frontends") for r in steps]
        assert frontends == sorted(set(frontends)), (phase, frontends)
        entries = [median(r, "bpf_entries") for r in steps]
        assert entries == sorted(entries) and entries[-1] > entries[0], (phase, entries)
        assert median(steps[-1], "bpf_maps_bytes") > median(steps[0], "bpf_maps_bytes")
        assert median(steps[-1], "gadget_invisible_bytes") > median(
            steps[0], "gadget_invisible_bytes"
        )
    down = records["down.services=0"]
    top = _phase(records, "up")[-1]
    assert median(down, "bpf_entries") < median(top, "bpf_entries")
    assert median(down, "bpf_maps_bytes") < median(top, "bpf_maps_bytes")


def test_resizes_never_go_back_within_a_cycle(records: dict[str, dict]) -> None:
    order = [*_phase(records, "up"), records["down.services=0"], *_phase(records, "up_again")]
    cycles = max(s["repetition"] for s in order[0]["samples"])
    for cycle in range(1, cycles + 1):
        counts = [
            next(s["resizes"] for s in r["samples"] if s["repetition"] == cycle) for r in order
        ]
        assert counts == sorted(counts), (cycle, counts)


def test_the_agent_is_back_to_its_own_services() -> None:
    assert_lab_as_before("suite_scaling")
