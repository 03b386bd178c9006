"""The report renders from a recorded run (tests/fixtures/results/, made by real quick runs)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from kmesh_lab import published, results
from kmesh_lab.report import mapping, render, verdict
from kmesh_lab.report.runs import load_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"
RUN_ID = "20261123T092845Z"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def copy_run(dest: Path, run_id: str = RUN_ID) -> Path:
    target = dest / run_id
    shutil.copytree(FIXTURES / run_id, target)
    return target


@pytest.fixture(scope="module")
def pub() -> published.Published:
    return published.load()


@pytest.fixture()
def rendered(tmp_path: Path) -> Path:
    run_dir = copy_run(tmp_path)
    render.render(run_dir)
    return run_dir


def table_rows(md: str) -> dict[str, list[str]]:
    """figure id -> the cells of its row in report.md."""
    rows: dict[str, list[str]] = {}
    for line in md.splitlines():
        m = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if m:
            assert m.group(1) not in rows, f"figure {m.group(1)} has two rows"
            rows[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return rows


def test_every_published_figure_appears_exactly_once(
    rendered: Path, pub: published.Published
) -> None:
    md = (rendered / "report.md").read_text()
    html = (rendered / "report.html").read_text()
    rows = table_rows(md)
    ids = [f.id for f in pub.figures]
    assert sorted(rows) == sorted(ids)
    for fig_id in ids:
        assert html.count(f"<code>{fig_id}</code>") == 1, fig_id
    for exp in pub.experiments:
        assert f"### {exp} — " in md
        assert f'id="{exp}"' in html


def test_images_exist_are_pngs_and_are_embedded(rendered: Path) -> None:
    pngs = sorted(rendered.glob("report_*.png"))
    names = {p.name for p in pngs}
    # The fixture run has the CPU, memory and scaling suites: their three plots.
    assert names == {
        "report_ebpf_cpu_vs_concurrency.png",
        "report_cpu_vs_pod_limit.png",
        "report_bpf_memory_vs_services.png",
    }
    md = (rendered / "report.md").read_text()
    html = (rendered / "report.html").read_text()
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, png.name
        assert f"]({png.name})" in md
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert "<img" in html and 'src="report_' not in html  # self-contained


def test_suites_that_did_not_run_say_so(rendered: Path, pub: published.Published) -> None:
    md = (rendered / "report.md").read_text()
    assert f"| suite_latency | not run: results/{RUN_ID}/suite_latency.json is absent" in md
    assert f"| suite_flood | not run: results/{RUN_ID}/suite_flood.json is absent" in md
    rows = table_rows(md)
    for fig in pub.figures:
        if fig.experiment.startswith(("latency.", "flood.")):
            assert rows[fig.id][3] == "**not run**", fig.id
    assert "Latency percentiles vs connections" in md
    assert "not run: suite_latency has no results in this run" in md
    assert "not run: suite_flood has no results in this run" in md


def test_suites_that_ran_answer_their_figures(pub: published.Published) -> None:
    run = load_run(FIXTURES / RUN_ID)
    rows = verdict.judge_all(pub.figures, run)
    for row in rows:
        if row.figure.experiment.split(".")[0] in ("cpu", "memory", "scaling"):
            # Every figure of a suite that ran is measured or says why it cannot be.
            assert row.verdict in {"reproduced", "differs", "statement", "no counterpart"}, (
                row.figure.id,
                row.verdict,
                row.why,
            )
            if row.verdict in ("reproduced", "differs"):
                assert row.measured is not None and row.measured.n >= 1
            if row.verdict == "differs":
                assert row.why
    assert {r.verdict for r in rows} >= {"reproduced", "differs", "not run", "no counterpart"}


def test_mapping_names_only_published_figures(pub: published.Published) -> None:
    ids = {f.id for f in pub.figures}
    assert set(mapping.FIGURES) <= ids
    for prefix in mapping.PREFIXES:
        assert any(i.startswith(prefix) for i in ids), prefix


def test_rendering_again_gives_the_same_bytes(tmp_path: Path) -> None:
    a = copy_run(tmp_path / "a")
    b = copy_run(tmp_path / "b")
    first = render.render(a)
    assert first["changed"] is True
    render.render(b)
    assert render.render(a)["changed"] is False
    outputs = sorted(p.name for p in a.glob("report*"))
    assert outputs == sorted(p.name for p in b.glob("report*"))
    for name in outputs:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _set_sample(run_dir: Path, suite: str, scenario: str, key: str, value: float) -> None:
    path = run_dir / f"{suite}.json"
    doc = json.loads(path.read_text())
    for rec in doc["records"]:
        if rec["scenario"] == scenario:
            for sample in rec["samples"]:
                sample[key] = value
            rec["summary"] = results.summarize_samples(rec["samples"])
    path.write_text(json.dumps(doc))


def test_a_measured_value_changes_the_report_but_not_the_published_column(
    tmp_path: Path,
) -> None:
    orig = copy_run(tmp_path / "orig")
    changed = copy_run(tmp_path / "changed")
    _set_sample(changed, "suite_cpu", "1_1.apps=1x1000m", "ebpf_cpu_pct_core", 13.5)
    render.render(orig)
    render.render(changed)
    before = table_rows((orig / "report.md").read_text())
    after = table_rows((changed / "report.md").read_text())
    fig = "cpu.1_1.ebpf_cpu_one_core.figure.en"
    assert after[fig][1].startswith("13.5 (13.5..13.5, n=3)")
    assert before[fig][1] != after[fig][1]
    assert (before[fig][3], after[fig][3]) == ("**differs**", "**reproduced**")
    assert {k: v[0] for k, v in before.items()} == {k: v[0] for k, v in after.items()}


def test_the_published_column_follows_published_yml(tmp_path: Path) -> None:
    doc = yaml.safe_load(published.DEFAULT_PATH.read_text())
    fig = "cpu.2_1.ebpf_cpu.threads_3000"
    for entry in doc["figures"]:
        if entry["id"] == fig:
            entry["value"] = 0.13
    alt = tmp_path / "published.yml"
    alt.write_text(yaml.safe_dump(doc, allow_unicode=True))
    orig = copy_run(tmp_path / "orig")
    other = copy_run(tmp_path / "other")
    render.render(orig)
    render.render(other, alt)
    before = table_rows((orig / "report.md").read_text())
    after = table_rows((other / "report.md").read_text())
    assert before[fig][0] == "9.5 percent_node"
    assert after[fig][0] == "0.13 percent_node"
    assert after[fig][1] == before[fig][1]  # measured unchanged
    assert [k for k in before if before[k][0] != after[k][0]] == [fig]


def test_findings_come_from_the_data(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path)
    render.render(run_dir)
    md = (run_dir / "report.md").read_text()
    findings = md.split("## Findings", 1)[1].split("##", 1)[0]
    assert findings.count("\n- ") >= 3
    assert "through the service VIP" in findings
    assert "per 1,000 services" in findings
    # Without the CPU suite, its findings and plots go, and the report says why.
    (run_dir / "suite_cpu.json").unlink()
    render.render(run_dir)
    md = (run_dir / "report.md").read_text()
    findings = md.split("## Findings", 1)[1].split("##", 1)[0]
    assert "pod limit" not in findings and "CPU limit" not in findings
    assert "per 1,000 services" in findings
    assert "not run: suite_cpu has no results in this run" in md


def test_an_empty_run_renders_every_figure_as_not_run(
    tmp_path: Path, pub: published.Published
) -> None:
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    render.render(run_dir)
    rows = table_rows((run_dir / "report.md").read_text())
    assert len(rows) == len(pub.figures)
    assert {v[3] for v in rows.values()} <= {"**not run**", "**no counterpart**"}
    assert "No finding" in (run_dir / "report.md").read_text()


def test_tolerance() -> None:
    assert verdict.agrees("=", 1.2, 1.0) and verdict.agrees("~", 0.81, 1.0)
    assert not verdict.agrees("=", 1.3, 1.0) and not verdict.agrees("~", 0.79, 1.0)
    assert verdict.agrees("<", 11, 12.1) and not verdict.agrees("<=", 12.2, 12.1)
    assert verdict.agrees(">", 51, 50) and not verdict.agrees(">=", 49, 50)


def test_a_missing_run_dir_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    assert render.main(["render", "--run-dir", str(tmp_path / "nope")]) == 2


def test_differs_names_what_the_lab_can_state(pub: published.Published) -> None:
    run = load_run(FIXTURES / RUN_ID)
    row = verdict.judge(pub.figure("cpu.2_1.ebpf_cpu.threads_3000"), run)
    assert row.verdict == "differs"
    env = row.measured.record["environment"] if row.measured else {}
    cores = env["cpu"]["cores"]
    # Both sides come from the data: the record's environment and the figure's conditions.
    assert f"node size: {cores} cores here vs 8" in row.why
    assert f"load tool: {env['tools']['load_generator']} here vs fortio" in row.why
    assert f"kernel: {env['kernel']['release']} here vs 5.10" in row.why


def _flood_records() -> list[dict]:
    """A flood stage's setup, ratio and A/B records as kmesh_lab.floodrun compare writes them."""
    env = {"host": "test"}

    def rec(scenario: str, params: dict, sample: dict) -> dict:
        return results.make_record("suite_flood", scenario, params, [sample], ["flood.setup"], env)

    out = [rec("svc.setup", {"stage": "svc", "services": 10000, "backend": "nft"}, {"pods": 50})]
    for b, ratio, http, met in (
        ("kmesh_node", 5.18, 3.31, True),
        ("kmesh_node_accel", 3.9, 3.6, False),
    ):
        params = {"stage": "svc", "a": "iptables", "b": b, "services": 10000}
        low, high = ratio - 0.5, ratio + 0.5
        sample = {"ratio": ratio, "ratio_ci_low": low, "ratio_ci_high": high}
        sample.update({"target_ratio": 4.0, "meets_target": met, "iptables_entries": 70055})
        out.append(rec(f"svc.throughput_ratio.{b}_vs_iptables", params, sample))
        out.append(rec(f"svc.http_throughput_ratio.{b}_vs_iptables", params, {"ratio": http}))
    for rps, exceeds, mb in ((1500, True, 0.05), (200, False, 0.1), (1000, True, 0.2)):
        params = {"stage": "svc", "block": "base", "rps": rps, "keepalive": False}
        params["metric"] = "p50_ms"
        sample = {"exceeds_noise": exceeds, "median_a": 0.1, "median_b": mb, "n_a": 5}
        out.append(
            rec(f"svc.compare.kmesh_node_vs_iptables.rps={rps}.ka=off.p50_ms", params, sample)
        )
    return out


def test_flood_findings_state_the_ratio_target_and_verdicts(tmp_path: Path) -> None:
    run_dir = copy_run(tmp_path)
    results.write_records(run_dir, "suite_flood", _flood_records())
    render.render(run_dir)
    md = (run_dir / "report.md").read_text()
    findings = md.split("## Findings", 1)[1].split("##", 1)[0]
    assert "10,000 services (70,055 iptables entries counted in the kernel)" in findings
    assert "against iptables-nft kube-proxy rules" in findings
    assert "kmesh_node 5.18x (95% CI 4.68-5.68x; target 4x met; short HTTP requests 3.31x)" in (
        findings
    )
    assert "kmesh_node_accel 3.90x (95% CI 3.40-4.40x; target 4x NOT met" in findings
    # in the order of the rates, each rate under what the test said of it
    said = "p50 latency (svc, 5 pairs per rate) within the noise at 200 rps; higher at 1000 rps; "
    assert said + "lower at 1500 rps." in findings
