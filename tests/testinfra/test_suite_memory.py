"""What roles/suite_memory leaves: results/<run_id>/suite_memory.json with the seeds' points
(1, 100, 1,000 services) and the load scenario, every repetition kept, figures physically
sane (true memory grows with services, the gadget view never exceeds it), and the agent back
to its own services."""

from __future__ import annotations

import pytest

from .services_state import (
    assert_lab_as_before,
    assert_memory_sample_is_physical,
    latest_results,
    median,
)

POINTS = (1, 100, 1000)


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    return latest_results("suite_memory")


def test_every_scenario_has_all_its_samples(records: dict[str, dict]) -> None:
    loads = [n for n in records if n.startswith("load.services=")]
    assert len(loads) == 1, sorted(records)
    assert {f"services={n}" for n in POINTS} | set(loads) == set(records)
    for name, rec in records.items():
        assert len(rec["samples"]) == rec["expected_samples"] >= 3, name
        assert rec["published"], f"{name}: no published figures copied"
        assert {f["experiment"] for f in rec["published"]} == set(rec["experiments"]), name
        assert rec["summary"], name


def test_points_are_measured_at_their_service_count(records: dict[str, dict]) -> None:
    for n in POINTS:
        rec = records[f"services={n}"]
        assert rec["experiments"] == ["memory.1"]
        for sample in rec["samples"]:
            assert sample["services"] == n == rec["params"]["services"]
            assert_memory_sample_is_physical(rec["scenario"], sample)
            if "answer_max_s" in sample:  # services were added: they answered via VIPs
                assert sample["answered_vips"] == sample["probed_vips"] > 0
                assert 0 <= sample["answer_floor_s"] <= sample["answer_max_s"]


def test_true_memory_follows_services_and_the_gadget_cannot_see_it(
    records: dict[str, dict],
) -> None:
    one, hundred, thousand = (records[f"services={n}"] for n in POINTS)
    # The agent's live frontends follow the services.
    assert median(thousand, "frontends") > median(hundred, "frontends") > median(one, "frontends")
    # Kernel entries and true bytes never shrink as services are added. Up to the first
    # frontend shard's capacity (a preallocated ARRAY, ~0.2 MiB) they may stay flat; the
    # growth beyond it is checked by the scaling suite, which goes further.
    for key in ("bpf_entries", "bpf_maps_bytes"):
        assert median(thousand, key) >= median(hundred, key) >= median(one, key), key
    # Most of it lives in inner maps, which the per-program (gadget) view cannot see.
    for rec in (one, hundred, thousand):
        assert median(rec, "gadget_invisible_bytes") > 0, rec["scenario"]
        assert median(rec, "bpf_maps_bytes") > median(rec, "gadget_distinct_bytes")


def test_load_went_through_the_vip_and_was_measured_during_it(records: dict[str, dict]) -> None:
    (rec,) = (r for n, r in records.items() if n.startswith("load."))
    assert rec["experiments"] == ["memory.2"]
    assert rec["params"]["keepalive"] is False and rec["params"]["qps"] == 0
    for sample in rec["samples"]:
        assert sample["load_count"] > 0 and sample["load_qps"] > 0
        assert sample["load"]["ret_codes"].get("200", 0) > 0
        assert sample["during_samples"] >= 1
        assert sample["bpf_runs_during"] > 0  # connect4 ran: the load used the VIP
        assert sample["services_before"] == sample["services_after"] == rec["params"]["services"]
        for when in ("before", "during_min", "during_max", "after"):
            assert sample[f"bpf_bytes_{when}"] > 0
            assert 0 < sample[f"gadget_distinct_bytes_{when}"] <= sample[f"bpf_maps_bytes_{when}"]


def test_the_agent_is_back_to_its_own_services() -> None:
    assert_lab_as_before("suite_memory")
