"""What roles/suite_smoke leaves: results/<run_id>/smoke.json with a measured, healthy load."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .conftest import REPO


def latest_smoke() -> Path:
    root = Path(os.environ.get("KMESH_LAB_RESULTS", REPO / "results"))
    runs = sorted(p for p in root.glob("*/smoke.json"))
    assert runs, f"no smoke.json under {root}: run the lab first"
    return runs[-1]


def test_smoke_json_holds_a_measured_healthy_load() -> None:
    doc = json.loads(latest_smoke().read_text())
    assert doc["suite"] == "smoke"
    scenarios = {r["scenario"]: r for r in doc["records"]}
    assert {"keepalive", "new-connection", "service-new-connection"} <= set(scenarios)
    for record in scenarios.values():
        assert {"params", "environment", "samples", "summary", "published"} <= set(record)
        assert record["samples"], record["scenario"]
        for sample in record["samples"]:
            assert sample["qps"] > 0
            assert sample["ret_codes"] == {"200": sample["count"]}
            assert sample["errors"] == 0
            assert 0 < sample["p50_ms"] <= sample["p99_ms"] <= sample["max_ms"]
    # Without keepalive every request opens its own connection.
    for name in ("new-connection", "service-new-connection"):
        new_conn = scenarios[name]["samples"][0]
        assert new_conn["socket_count"] == new_conn["count"]
        assert new_conn["tcp_active_opens"] >= new_conn["count"]
    # Through the Service VIP, kmesh_node rewrote every connection to a live endpoint.
    assert scenarios["service-new-connection"]["params"]["target"] == "service"
