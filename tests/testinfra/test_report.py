"""What roles/report leaves: report.md and report.html for the latest run, naming every
experiment of reference/published.yml, with their plots embedded."""

from __future__ import annotations

import os
from pathlib import Path

from kmesh_lab import published

from .conftest import REPO


def latest_run() -> Path:
    """The newest run that measured something (the smoke stage runs in every site.yml)."""
    root = Path(os.environ.get("KMESH_LAB_RESULTS", REPO / "results"))
    runs = sorted(p.parent for p in root.glob("*/smoke.json"))
    assert runs, f"no run with results under {root}: run the lab first (make lab)"
    return runs[-1]


def test_report_files_exist_for_the_latest_run() -> None:
    run = latest_run()
    for name in ("report.md", "report.html"):
        path = run / name
        assert path.is_file(), (
            f"{path} is missing: run ansible-playbook playbooks/report.yml -e lab_run_id={run.name}"
        )
        assert path.stat().st_size > 1000, path


def test_report_names_every_experiment_and_figure() -> None:
    run = latest_run()
    md = (run / "report.md").read_text(encoding="utf-8")
    html = (run / "report.html").read_text(encoding="utf-8")
    pub = published.load()
    for exp in pub.experiments:
        assert f"### {exp} — " in md, exp
        assert f'id="{exp}"' in html, exp
    for fig in pub.figures:
        assert md.count(f"| `{fig.id}` |") == 1, fig.id
    assert "## Findings" in md and "## Environment" in md
    # The smoke results of this run are in the report.
    assert "| service-new-connection | service |" in md


def test_report_html_is_self_contained() -> None:
    run = latest_run()
    html = (run / "report.html").read_text(encoding="utf-8")
    pngs = sorted(run.glob("report_*.png"))
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert 'src="report_' not in html and 'src="http' not in html and "<link" not in html
