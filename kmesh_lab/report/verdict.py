"""Compare one published figure with what the run measured.

Verdicts:

- **reproduced**: the measured median agrees with the figure. For "=" and "~" that means
  within ``TOLERANCE`` (a factor of 1.25 either way: 0.8 <= measured / published <= 1.25);
  for "<", "<=", ">", ">=" the median satisfies the relation; for a {min, max} range the
  median lies inside it.
- **differs**: it does not; the reason names what the lab can state from the record's
  environment and params against the figure's conditions (node size, kernel, tool, data
  plane, load scaled to the node).
- **statement**: the source gives no number; the measured value is shown for the reader.
- **no counterpart**: the lab measures nothing comparable (the reason says why).
- **not run**: the suite or scenario that would answer it has no results in this run.
- **not mapped**: its suite ran, but kmesh_lab/report/mapping.py names no metric for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kmesh_lab.published import Figure
from kmesh_lab.report.mapping import Measured, NoCounterpart, measure, source_for
from kmesh_lab.report.runs import Run

TOLERANCE = 1.25
TOLERANCE_TEXT = (
    "reproduced = the measured median is within a factor of 1.25 of the published value "
    "(0.8 <= ratio <= 1.25) for '=' and '~' figures, satisfies the relation for '<', '<=', "
    "'>', '>=', or lies inside a published range"
)


@dataclass(frozen=True)
class Row:
    figure: Figure
    published: str  # the published figure, as text
    target: float | None  # the number compared against (None: nothing to compare)
    measured: Measured | None
    ratio: float | None
    verdict: str
    why: str


def published_text(fig: Figure) -> str:
    rel = "" if fig.relation == "=" else fig.relation + " "
    if fig.value is None:
        return f"({fig.statement})" if fig.statement else "(statement)"
    if isinstance(fig.value, dict):
        return f"{rel}{fig.value['min']}..{fig.value['max']} {fig.unit}"
    if isinstance(fig.value, list):
        parts = (
            [f"{lab}={v}" for lab, v in zip(fig.labels, fig.value, strict=True)]
            if fig.labels
            else [str(v) for v in fig.value]
        )
        return f"{rel}{', '.join(parts)} {fig.unit}"
    return f"{rel}{fig.value} {fig.unit}"


def _target(fig: Figure, label: str | None) -> float | None:
    if isinstance(fig.value, int | float):
        return float(fig.value)
    if isinstance(fig.value, list) and label and label in fig.labels:
        return float(fig.value[fig.labels.index(label)])
    return None


def agrees(relation: str, measured: float, target: float) -> bool:
    if relation in ("=", "~"):
        if target == 0:
            return measured == 0
        ratio = measured / target
        return 1 / TOLERANCE <= ratio <= TOLERANCE
    return {
        "<": measured < target,
        "<=": measured <= target,
        ">": measured > target,
        ">=": measured >= target,
    }[relation]


def _num(text: object) -> float | None:
    m = re.search(r"\d+(\.\d+)?", str(text))
    return float(m.group(0)) if m else None


def differences(fig: Figure, record: dict[str, Any]) -> list[str]:
    """What the lab can state differs between the figure's conditions and this run."""
    cond = fig.conditions
    env = record.get("environment", {})
    params = record.get("params", {})
    out: list[str] = []
    cores = env.get("cpu", {}).get("cores")
    if cond.get("node_cores") and cores and cond["node_cores"] != cores:
        out.append(f"node size: {cores} cores here vs {cond['node_cores']}")
    release = str(env.get("kernel", {}).get("release", ""))
    if cond.get("kernel") and release:
        theirs = str(cond["kernel"]).split()[0]
        if not release.startswith(theirs):
            out.append(f"kernel: {release} here vs {theirs}")
    gen = env.get("tools", {}).get("load_generator")
    if cond.get("load_tool") and gen and gen not in str(cond["load_tool"]):
        out.append(f"load tool: {gen} here vs {cond['load_tool']}")
    if cond.get("memory_tool"):
        out.append(
            f"memory tool: kmesh-node top (map memlock from the kernel) here vs "
            f"{cond['memory_tool']}"
        )
    if cond.get("kmesh"):
        out.append(f"data plane: kmesh_node (this lab's agent) vs Kmesh {cond['kmesh']}")
    seed_conns = _num(cond.get("connections")) or params.get("seed_threads")
    ours = params.get("connections_per_app")
    if seed_conns and ours and float(seed_conns) != float(ours):
        out.append(f"load: {ours} connections per app here vs {seed_conns:g}")
    return out


def judge(fig: Figure, run: Run) -> Row:
    src = source_for(fig.id)
    text = published_text(fig)
    suite = fig.experiment.split(".")[0]
    if src is None:
        ran = any(
            rec.get("experiments") and fig.experiment in rec["experiments"]
            for rec in run.all_records()
        ) or any(s.endswith(suite) for s in run.suites)
        if ran:
            return Row(
                fig,
                text,
                None,
                None,
                None,
                "not mapped",
                "its suite ran, but kmesh_lab/report/mapping.py names no metric for it",
            )
        return Row(
            fig,
            text,
            None,
            None,
            None,
            "not run",
            f"no suite of this run answers {fig.experiment} (suite_{suite} has no results)",
        )
    label = getattr(src, "label", None)
    measured, why = measure(src, run, fig.unit)
    if measured is None:
        # a NoCounterpart tied to a suite applies only when that suite ran
        no_counterpart = isinstance(src, NoCounterpart) and (
            src.suite is None or bool(run.records(src.suite))
        )
        verdict = "no counterpart" if no_counterpart else "not run"
        return Row(fig, text, None, None, None, verdict, why)
    target = _target(fig, label)
    if fig.value is None:
        return Row(
            fig,
            text,
            None,
            measured,
            None,
            "statement",
            "the source states no number; the measured value is shown for the reader",
        )
    if isinstance(fig.value, dict):
        inside = fig.value["min"] <= measured.median <= fig.value["max"]
        verdict = "reproduced" if inside else "differs"
        reasons = [] if inside else differences(fig, measured.record)
        return Row(fig, text, None, measured, None, verdict, "; ".join(reasons))
    if target is None:
        return Row(
            fig,
            text,
            None,
            measured,
            None,
            "statement",
            "no single published number to compare with",
        )
    ratio = measured.median / target if target else None
    if agrees(fig.relation, measured.median, target):
        return Row(fig, text, target, measured, ratio, "reproduced", "")
    reasons = differences(fig, measured.record) or [
        "the lab can state no difference in node size, kernel or tool"
    ]
    return Row(fig, text, target, measured, ratio, "differs", "; ".join(reasons))


def judge_all(figures: tuple[Figure, ...], run: Run) -> list[Row]:
    return [judge(fig, run) for fig in figures]
