"""reference/published.yml: schema, uniqueness, coverage, and figures checked against the seeds."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from kmesh_lab import published as pub

SOURCES = pub.DEFAULT_SOURCES_ROOT
SEEDS = SOURCES / "seeds"
SHARED_SEEDS = pub.REPO_ROOT.parent / "shared" / "seeds"


@pytest.fixture(scope="module")
def data() -> pub.Published:
    return pub.load()


@pytest.fixture()
def raw_doc() -> dict:
    return yaml.safe_load(pub.DEFAULT_PATH.read_text(encoding="utf-8"))


def seed_text(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


def test_loads_and_ids_are_unique(data: pub.Published) -> None:
    ids = [f.id for f in data.figures]
    assert len(ids) == len(set(ids))
    assert len(ids) > 100


def test_every_quote_is_in_its_source_and_carries_the_number(data: pub.Published) -> None:
    assert pub.check_sources(data) == []


def test_every_seed_file_is_referenced(data: pub.Published) -> None:
    cited_files = {data.sources[ref.source]["file"] for f in data.figures for ref in f.sources}
    seed_files = {f"seeds/{p.name}" for p in SEEDS.glob("*.txt")}
    assert len(seed_files) == 5
    assert seed_files <= cited_files


def test_every_experiment_has_figures(data: pub.Published) -> None:
    for exp in data.experiments:
        assert data.by_experiment(exp), exp


@pytest.mark.skipif(not SHARED_SEEDS.is_dir(), reason="no ../shared/seeds next to this checkout")
def test_source_copies_match_the_shared_seeds() -> None:
    for shared in SHARED_SEEDS.iterdir():
        assert (SEEDS / shared.name).read_bytes() == shared.read_bytes(), shared.name


def _table_rows(text: str, header_word: str) -> list[list[str]]:
    """Rows of the first markdown table whose header contains header_word."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and header_word in line)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize(("prefix", "header"), [("000", "Threads"), ("001", "threads")])
def test_thread_sweep_table_matches_seed(data: pub.Published, prefix: str, header: str) -> None:
    rows = _table_rows(seed_text(prefix), header)
    assert [r[0] for r in rows] == ["100", "500", "1000", "3000"]
    for threads, app, ebpf in rows:
        app_fig = data.figure(f"cpu.2_1.app_cpu.threads_{threads}")
        ebpf_fig = data.figure(f"cpu.2_1.ebpf_cpu.threads_{threads}")
        assert app_fig.value == float(app.rstrip("%"))
        assert ebpf_fig.value == float(ebpf.rstrip("%"))
        assert app_fig.params == {"threads": int(threads)}
        assert app_fig.unit == "percent_node"


def test_bpftool_groups_match_seed_json(data: pub.Published) -> None:
    text = seed_text("002")
    before, after = (
        json.loads(m.group(1))
        for m in re.finditer(r"sort_by\(\.total_bytes_memlock\)'\n(\[.*?\n\])", text, re.S)
    )
    figs = data.by_experiment("scaling.bpftool")
    by_name = {f.params.get("map_name"): f for f in figs if f.metric.startswith("bpftool_memlock")}
    assert len(by_name) == len(before) == 20
    for b, a in zip(before, after, strict=True):
        fig = by_name[b["name"]]
        assert fig.value == [b["total_bytes_memlock"], a["total_bytes_memlock"]]
        assert fig.labels == ("before", "after")
    assert data.figure("scaling.bpftool.inner_map_count").value == [
        before[-1]["maps"],
        after[-1]["maps"],
    ]


def test_spot_checks_against_seed_text(data: pub.Published) -> None:
    en = seed_text("000")
    assert "12.99%" in en and data.figure("cpu.1_1.ebpf_cpu_one_core.figure.en").value == 12.99
    assert "99.3%" in en and data.figure("cpu.2_2.ebpf_cpu_at_saturation").value == 99.3
    zh = seed_text("001")
    user, kernel, total = re.search(
        r"用户空间占用(\d+(?:\.\d+)?)%, 内核空间占用(\d+(?:\.\d+)?)%\W一共消耗(\d+(?:\.\d+)?)%", zh
    ).groups()
    assert data.figure("cpu.1_1.user_cpu_node.zh").value == float(user)
    assert data.figure("cpu.1_1.kernel_cpu_node.zh").value == float(kernel)
    assert data.figure("cpu.1_1.total_cpu_node.zh").value == float(total)
    thesis = seed_text("003")
    entries = int(re.search(r"resulting in (\d+) entries in the iptables ruleset", thesis).group(1))
    assert data.figure("flood.setup.iptables_entries").value == entries
    lo, hi = re.search(r"in the range of ([\d.]+)% to ([\d.]+)%", thesis).groups()
    assert data.figure("flood.cpu.merbridge_max_cpu_range").value == {
        "min": float(lo),
        "max": float(hi),
    }
    blog = seed_text("004")
    assert "more than a 50% reduction" in blog
    assert data.figure("latency.claims.latency_reduction_vs_sidecar").relation == ">"


def test_languages_kept_apart_where_they_differ(data: pub.Published) -> None:
    en = data.figure("cpu.1_3.loop_iterations.en")
    zh = data.figure("cpu.1_3.loop_iterations.zh")
    assert (en.value, en.language) == (65535, "en")
    assert (zh.value, zh.language) == (10000, "zh")


def test_conditions_are_resolved(data: pub.Published) -> None:
    fig = data.figure("cpu.1_1.ebpf_cpu_one_core.figure.en")
    assert fig.conditions["node_cores"] == 8
    assert fig.conditions["connections"] == 1500
    assert fig.to_dict(data.sources)["sources"][0]["file"].startswith("seeds/000_")


def test_by_experiment_family_and_unknown(data: pub.Published) -> None:
    assert {f.experiment for f in data.by_experiment("cpu")} == {
        "cpu.1_1",
        "cpu.1_2",
        "cpu.1_3",
        "cpu.2_1",
        "cpu.2_2",
    }
    with pytest.raises(KeyError, match=r"unknown experiment id 'cpu\.9'"):
        data.by_experiment("cpu.9")


def _parse(doc: dict) -> pub.Published:
    return pub.parse(doc, Path("published.yml"))


def test_schema_error_names_entry_and_field(raw_doc: dict) -> None:
    doc = copy.deepcopy(raw_doc)
    del doc["figures"][0]["unit"]
    fig_id = doc["figures"][0]["id"]
    with pytest.raises(pub.PublishedError, match=rf"figure '{re.escape(fig_id)}'.*'unit'"):
        _parse(doc)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda f: f.update(value="lots"), "value"),
        (lambda f: f.update(value=None, statement=None), "statement"),
        (lambda f: f.update(value={"min": 3, "max": 1}), "value"),
        (lambda f: f.update(experiment="cpu.9_9"), "experiment"),
        (lambda f: f.update(relation="about"), "relation"),
        (lambda f: f.update(labels=["a"]), "labels"),
        (lambda f: f.update(conditions=["nope"]), "conditions"),
        (lambda f: f.update(sources=[]), "sources"),
        (lambda f: f["sources"][0].update(source="seed999"), "source"),
        (lambda f: f.update(colour="red"), "colour"),
    ],
)
def test_schema_rejects_bad_fields(raw_doc: dict, mutate, field: str) -> None:
    doc = copy.deepcopy(raw_doc)
    mutate(doc["figures"][0])
    with pytest.raises(pub.PublishedError, match=f"'{field}'"):
        _parse(doc)


def test_duplicate_id_rejected(raw_doc: dict) -> None:
    doc = copy.deepcopy(raw_doc)
    doc["figures"].append(copy.deepcopy(doc["figures"][0]))
    with pytest.raises(pub.PublishedError, match="used twice"):
        _parse(doc)


def test_missing_file_error_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(pub.PublishedError, match="KMESH_LAB_PUBLISHED"):
        pub.load(tmp_path / "absent.yml")


def test_number_forms() -> None:
    assert pub._contains_number("~0.080 s", 0.08)
    assert pub._contains_number("65,535 iterations", 65535)
    assert pub._contains_number("less than five minutes", 5)
    assert not pub._contains_number("4.4%", 4)
    assert not pub._contains_number("50%", 5)
