"""Render ``report.md`` and a self-contained ``report.html`` for one run.

CLI::

    python -m kmesh_lab.report render --run-dir results/<run_id> [--published FILE]

Writes ``report.md``, ``report.html`` and one ``report_<plot>.png`` per plot into the run
directory, each only when its content changed, and prints a JSON line
``{"changed": bool, "report_md": path, "report_html": path, "plots": [...]}``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from kmesh_lab import published as published_mod
from kmesh_lab.report import findings, plots, verdict
from kmesh_lab.report.mapping import display_unit, source_for
from kmesh_lab.report.runs import KNOWN_SUITES, Run, RunError, load_run

TEMPLATES = Path(__file__).parent / "templates"


def fmt(value: float | int | None) -> str:
    """A readable number: integers as they are, 4 significant digits below 10,000."""
    if value is None:
        return "-"
    v = float(value)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 10000:
        return f"{v:.0f}"
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4g}"


def _measured_text(row: verdict.Row) -> str:
    m = row.measured
    if m is None:
        return "-"
    src = source_for(row.figure.id)
    unit = display_unit(src, row.figure.unit) if src else row.figure.unit
    if m.n == 1 and m.min == m.max:
        return f"{fmt(m.median)} {unit} (setting)"
    text = f"{fmt(m.median)} ({fmt(m.min)}..{fmt(m.max)}, n={m.n}) {unit}"
    if m.also:
        text += f"; true total ({m.also[0]}): {fmt(m.also[1])} {unit}"
    return text


def _rows(rows: list[verdict.Row]) -> list[dict[str, str]]:
    return [
        {
            "id": r.figure.id,
            "published": r.published,
            "language": r.figure.language or "",
            "measured": _measured_text(r),
            "where": r.measured.where if r.measured else "",
            "ratio": fmt(r.ratio) if r.ratio is not None else "-",
            "verdict": r.verdict,
            "why": r.why,
        }
        for r in rows
    ]


def _suites(run: Run) -> list[dict[str, Any]]:
    names = list(KNOWN_SUITES) + sorted(set(run.suites) - set(KNOWN_SUITES))
    out = []
    for name in names:
        recs = run.records(name)
        if recs:
            n = sum(len(r.get("samples", [])) for r in recs)
            out.append({"suite": name, "ran": True, "text": f"{len(recs)} scenarios, {n} samples"})
        else:
            out.append(
                {
                    "suite": name,
                    "ran": False,
                    "text": f"not run: results/{run.run_id}/{name}.json is absent (its stage "
                    f"did not run in this run, or was not selected by --tags)",
                }
            )
    return out


def _environment(run: Run) -> dict[str, Any]:
    recs = run.all_records()
    if not recs:
        return {}
    env = recs[0].get("environment", {})
    tools = env.get("tools", {})
    kc = env.get("kernel_config", {})
    lab = env.get("lab", {})
    times = sorted(
        t
        for r in recs
        for t in (r.get("environment", {}).get("collected_at"), r.get("recorded_at"))
        if isinstance(t, str)
    )
    revisions = sorted(
        {
            f"{g.get('revision')}{' (dirty)' if g.get('dirty') else ''}"
            for r in recs
            if (g := r.get("environment", {}).get("git", {})).get("revision")
        }
    )
    mem = env.get("memory_bytes")
    iptables = tools.get("iptables") or {}
    kernel = env.get("kernel", {})
    load_version = tools.get("fortio") or tools.get("wrk")
    facts = [
        ("kernel", f"{kernel.get('release')} {kernel.get('version')}"),
        (
            "kernel config",
            ", ".join(f"{k.removeprefix('CONFIG_')}={v}" for k, v in kc.items() if k != "source")
            + (f" (from {kc['source']})" if kc.get("source") else ""),
        ),
        ("CPU", f"{env.get('cpu', {}).get('cores')} cores, {env.get('cpu', {}).get('model')}"),
        ("memory", f"{mem / 2**30:.1f} GiB" if isinstance(mem, int | float) else "-"),
        ("cgroup mode", str(env.get("cgroup_mode"))),
        ("lab backend / profile", f"{lab.get('backend', '-')} / {lab.get('profile', '-')}"),
        ("load generator", f"{tools.get('load_generator')}: {load_version}"),
        ("bcc", str(tools.get("bcc"))),
        ("nginx", str(tools.get("nginx"))),
        ("bpftool", str(tools.get("bpftool"))),
        ("iptables", f"{iptables.get('version')} (backend {iptables.get('backend')})"),
        ("nft", str(tools.get("nft"))),
        ("python", str(tools.get("python"))),
        ("git revision", ", ".join(revisions) or "-"),
        ("start (first record)", times[0] if times else "-"),
        ("end (last record)", times[-1] if times else "-"),
    ]
    profile = lab.get("profile", "quick")
    return {
        "facts": facts,
        "profile": profile,
        "reproduce": f"ansible-playbook -i inventories/local site.yml -e lab_profile={profile}",
        "rerender": f"ansible-playbook playbooks/report.yml -e lab_run_id={run.run_id}",
    }


def _smoke(run: Run) -> list[dict[str, str]]:
    out = []
    for r in run.records("smoke"):
        s = r.get("summary", {})
        p = r.get("params", {})

        def med(key: str, s: dict[str, Any] = s) -> str:
            return fmt(s.get(key, {}).get("median"))

        out.append(
            {
                "scenario": r["scenario"],
                "target": str(p.get("target", "-")),
                "keepalive": str(p.get("keepalive", "-")),
                "connections": str(p.get("connections", "-")),
                "qps": med("qps"),
                "p50": med("p50_ms"),
                "p99": med("p99_ms"),
                "n": str(s.get("qps", {}).get("n", 0)),
            }
        )
    return out


def build(run: Run, pub: published_mod.Published) -> tuple[dict[str, Any], list[plots.Plot]]:
    """The template context and the plots of a run."""
    rows = verdict.judge_all(pub.figures, run)
    by_exp: dict[str, list[verdict.Row]] = {}
    for row in rows:
        by_exp.setdefault(row.figure.experiment, []).append(row)
    experiments = [
        {
            "id": exp_id,
            "title": exp["title"],
            "suite": exp["suite"],
            "ran": bool(run.records(exp["suite"])),
            "rows": _rows(by_exp.get(exp_id, [])),
        }
        for exp_id, exp in pub.experiments.items()
    ]
    made: list[plots.Plot] = []
    plot_sections = []
    for suite, title, func in plots.PLOTS:
        plot = func(run, pub)
        if plot is not None:
            made.append(plot)
        plot_sections.append(
            {
                "title": plot.title if plot else title,
                "plot": plot,
                "file": f"report_{plot.name}.png" if plot else None,
                "data_uri": (
                    "data:image/png;base64," + base64.b64encode(plot.png).decode() if plot else None
                ),
                "why": (
                    ""
                    if plot
                    else (
                        f"not run: {suite} has no results in this run"
                        if not run.records(suite)
                        else f"not drawn: {suite} ran but recorded none of the data this plot needs"
                    )
                ),
            }
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.verdict] = counts.get(row.verdict, 0) + 1
    context = {
        "run_id": run.run_id,
        "findings": findings.findings(run, pub),
        "tolerance": verdict.TOLERANCE_TEXT,
        "suites": _suites(run),
        "experiments": experiments,
        "plots": plot_sections,
        "environment": _environment(run),
        "smoke": _smoke(run),
        "counts": sorted(counts.items()),
        "n_figures": len(rows),
        "published_path": pub.path.name,
    }
    return context, made


def md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
    )
    env.filters["cell"] = md_cell
    return env


def _write(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def render(run_dir: Path | str, published_path: Path | str | None = None) -> dict[str, Any]:
    """Render the run's report files; returns what changed and where they are."""
    run = load_run(run_dir)
    pub = published_mod.load(published_path)
    context, made = build(run, pub)
    env = _env()
    md = env.get_template("report.md.j2").render(**context)
    html = env.get_template("report.html.j2").render(**context)
    changed = False
    for plot in made:
        changed |= _write(run.path / f"report_{plot.name}.png", plot.png)
    changed |= _write(run.path / "report.md", md.encode())
    changed |= _write(run.path / "report.html", html.encode())
    return {
        "changed": changed,
        "report_md": str(run.path / "report.md"),
        "report_html": str(run.path / "report.html"),
        "plots": sorted(f"report_{p.name}.png" for p in made),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.report", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("render", help="render report.md and report.html of one run")
    cmd.add_argument("--run-dir", required=True, type=Path, help="results/<run_id>")
    cmd.add_argument("--published", type=Path, help="published.yml to compare against")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(render(args.run_dir, args.published), sort_keys=True))
    except (RunError, published_mod.PublishedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
