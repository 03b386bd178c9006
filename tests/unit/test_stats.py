"""Arithmetic and parsing of `kmesh-node top`, on a sample recorded from the real kernel
(tests/unit/data/stats_kernel_sample.json: a socket filter, an array-of-maps with 2 inner
arrays, a hash-of-maps with 1 inner hash, and a plain hash) and on hand-made inputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from kmesh_node import bpfobjects, stats

SAMPLE = Path(__file__).parent / "data" / "stats_kernel_sample.json"


def _sample() -> dict[str, Any]:
    raw = json.loads(SAMPLE.read_text())
    raw["before"] = {int(k): tuple(v) for k, v in raw["before"].items()}
    raw["after"] = {int(k): tuple(v) for k, v in raw["after"].items()}
    return raw


def _report() -> dict[str, Any]:
    s = _sample()
    meta = {"timestamp": 1.0, "interval": 0.3, "bpffs": "/sys/fs/bpf/x", "stats_method": "fd"}
    return stats.build_report(s["inventory"], s["before"], s["after"], s["wall_ns"], 2, meta)


def test_program_rates_arithmetic() -> None:
    rates = stats.program_rates(
        before={1: (1_000, 10), 2: (0, 0)},
        after={1: (501_000, 2_010), 2: (0, 0), 3: (4_000, 4)},
        wall_ns=1_000_000_000,
        ncpu=4,
    )
    assert rates[1]["delta_run_time_ns"] == 500_000
    assert rates[1]["delta_run_cnt"] == 2_000
    assert rates[1]["ns_per_run"] == 250.0
    assert rates[1]["cpu_pct_core"] == pytest.approx(0.05)  # 0.5 ms of 1 s
    assert rates[1]["cpu_pct_node"] == pytest.approx(0.0125)
    assert rates[1]["runs_per_s"] == pytest.approx(2_000)
    assert rates[2]["ns_per_run"] is None  # did not run: no per-run figure, not 0
    assert rates[3]["delta_run_cnt"] == 4  # appeared meanwhile: measured from zero


def test_program_rates_never_negative() -> None:
    # a program id reused after reload would restart at 0: clamp, do not report < 0
    rates = stats.program_rates({1: (10_000, 100)}, {1: (5, 1)}, 1_000, 1)
    assert rates[1]["delta_run_time_ns"] == 0
    assert rates[1]["cpu_pct_core"] == 0.0


def test_report_on_kernel_sample() -> None:
    s = _sample()
    r = _report()
    (prog,) = r["programs"]
    pid = prog["id"]
    dt = s["after"][pid][0] - s["before"][pid][0]
    dc = s["after"][pid][1] - s["before"][pid][1]
    assert dc >= 1000
    assert prog["ns_per_run"] == pytest.approx(dt / dc)
    assert prog["cpu_pct_core"] == pytest.approx(dt / s["wall_ns"] * 100)
    assert prog["cpu_pct_node"] == pytest.approx(prog["cpu_pct_core"] / 2)
    assert prog["run_cnt"] == s["after"][pid][1]  # cumulative as of the window's end

    maps = r["maps"]
    t = r["totals"]
    assert t["maps"] == len(maps) == 6
    assert t["inner_maps"] == 3
    assert t["maps_bytes"] == sum(m["memlock_bytes"] for m in maps)
    assert t["bytes"] == t["maps_bytes"] + t["programs_bytes"]
    assert t["inner_maps_bytes"] == sum(m["memlock_bytes"] for m in maps if m["inner_of"])
    # outer maps first, inner maps after (so a reader meets the parent before its children)
    kinds = [m["inner_of"] is not None for m in maps]
    assert kinds == sorted(kinds)


def test_gadget_view_on_kernel_sample_shows_the_blind_spot() -> None:
    r = _report()
    g = r["gadget_view"]
    by_name = {m["name"]: m for m in r["maps"]}
    (gp,) = g["programs"]
    assert gp["map_bytes"] == sum(
        by_name[n]["memlock_bytes"] for n in ("outer", "houter", "counts")
    )
    assert g["invisible_inner_map_bytes"] == r["totals"]["inner_maps_bytes"]
    assert g["truth_bytes"] == g["distinct_referenced_bytes"] + g["invisible_bytes"]
    assert g["truth_bytes"] > 4 * g["distinct_referenced_bytes"]  # the gadget shows < 1/4


def test_gadget_view_counts_shared_maps_once_per_program() -> None:
    maps = [
        {"id": 1, "memlock_bytes": 1000, "inner_of": None},
        {"id": 2, "memlock_bytes": 80, "inner_of": None},  # outer: slots only
        {"id": 3, "memlock_bytes": 5000, "inner_of": 2},
    ]
    programs = [
        {"id": 10, "name": "a", "map_ids": [1, 2]},
        {"id": 11, "name": "b", "map_ids": [1]},
    ]
    g = stats.gadget_view(programs, maps)
    assert [p["map_bytes"] for p in g["programs"]] == [1080, 1000]
    assert g["sum_bytes"] == 2080  # map 1 twice, as the gadget's column adds up
    assert g["distinct_referenced_bytes"] == 1080
    assert g["truth_bytes"] == 6080
    assert g["invisible_inner_map_bytes"] == 5000


def test_parse_fdinfo_and_kind() -> None:
    prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1\nprog_type:\t1\nprog_jited:\t1\n"
    prog += "prog_tag:\tabc\nmemlock:\t4096\nprog_id:\t42\nrun_time_ns:\t900\nrun_cnt:\t3\n"
    info = bpfobjects.parse_fdinfo(prog)
    assert bpfobjects.kind_of(info) == "prog"
    assert info["run_time_ns"] == "900"
    mp = "map_type:\t12\nkey_size:\t4\nvalue_size:\t4\nmax_entries:\t8\nmap_flags:\t0x0\n"
    mp += "memlock:\t376\nmap_id:\t7\nfrozen:\t0\n"
    assert bpfobjects.kind_of(bpfobjects.parse_fdinfo(mp)) == "map"
    link = "link_type:\tcgroup\nlink_id:\t3\nprog_tag:\tabc\nprog_id:\t42\n"
    assert bpfobjects.kind_of(bpfobjects.parse_fdinfo(link)) == "link"
    assert bpfobjects.MAP_TYPES[12] == "array_of_maps"
    assert bpfobjects.PROG_TYPES[18] == "cgroup_sock_addr"


def test_value_buffer_sizes() -> None:
    # fd maps return a u32 id whatever their value_size; per-CPU values are 8-aligned per CPU
    assert bpfobjects._value_buf_size("array_of_maps", 4) == 4
    assert bpfobjects._value_buf_size("hash", 13) == 13
    ncpu = bpfobjects.possible_cpus()
    assert bpfobjects._value_buf_size("percpu_hash", 4) == 8 * ncpu


def test_stats_enabled_sysctl_fallback_restores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sysctl = tmp_path / "bpf_stats_enabled"
    sysctl.write_text("0\n")

    def no_fd() -> int:
        raise OSError(22, "EINVAL")

    monkeypatch.setattr(bpfobjects, "enable_stats", no_fd)
    with stats.stats_enabled(str(sysctl)) as how:
        assert how == "sysctl"
        assert sysctl.read_text() == "1"
    assert sysctl.read_text().strip() == "0"


def test_stats_enabled_leaves_an_enabled_sysctl_alone(tmp_path: Path) -> None:
    sysctl = tmp_path / "bpf_stats_enabled"
    sysctl.write_text("1\n")
    with stats.stats_enabled(str(sysctl)) as how:
        assert how == "already_on"
    assert sysctl.read_text() == "1\n"


def test_collect_rejects_zero_interval() -> None:
    with pytest.raises(RuntimeError, match="--interval"):
        stats.collect("/nonexistent", 0)


def test_top_command_outputs(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    calls = []

    def fake_collect(bpffs: str, interval: float) -> dict[str, Any]:
        calls.append((bpffs, interval))
        return _report()

    monkeypatch.setattr(stats, "collect", fake_collect)
    args = argparse.Namespace(bpffs="/b", interval=0.5, count=2, json=True)
    assert stats.top_command(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(json.loads(x)["totals"]["inner_maps"] == 3 for x in lines)
    assert calls == [("/b", 0.5), ("/b", 0.5)]

    args = argparse.Namespace(bpffs="/b", interval=0.5, count=1, json=False)
    stats.top_command(args)
    out = capsys.readouterr().out
    assert "kmtest_filter" in out
    assert "2 inner map(s)" in out
    assert "invisible to it" in out
