"""Published figures: load, validate and look up reference/published.yml.

reference/published.yml holds every figure the source documents (the seeds, and the
published numbers ANCHORS.md cites) publish. It is the only place such numbers live: the
results writer copies them into each record's ``published`` block and the report compares
against them. This module loads it, checks its schema (an error names the entry and the
field), looks figures up by experiment id, and verifies that every figure's quote is
really in its source and carries its number (``check_sources``).

CLI::

    python -m kmesh_lab.published check              # schema + quotes against the sources
    python -m kmesh_lab.published list [--experiment cpu.2_1] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO_ROOT / "reference" / "published.yml"
# The sources the quotes are checked against (copies of ../shared/seeds and ANCHORS.md),
# kept next to published.yml so a fresh clone can verify every figure.
DEFAULT_SOURCES_ROOT = REPO_ROOT / "reference" / "sources"
ENV_PATH = "KMESH_LAB_PUBLISHED"

SCHEMA_VERSION = 1
RELATIONS = ("=", "~", "<", ">", "<=", ">=")
LANGUAGES = ("en", "zh")
_ID_RE = re.compile(r"^[a-z0-9_]+(\.[A-Za-z0-9_]+)+$")
_FIGURE_KEYS = {
    "id",
    "experiment",
    "metric",
    "value",
    "labels",
    "unit",
    "relation",
    "params",
    "language",
    "statement",
    "conditions",
    "sources",
    "note",
}
# Sources sometimes spell small numbers out ("less than five minutes").
_NUMBER_WORDS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
}

Value = float | int | list[float | int] | dict[str, float | int] | None


class PublishedError(RuntimeError):
    """reference/published.yml is malformed; the message names the entry and field."""


@dataclass(frozen=True)
class SourceRef:
    source: str
    section: str
    quote: str


@dataclass(frozen=True)
class Figure:
    id: str
    experiment: str
    metric: str
    value: Value
    unit: str
    sources: tuple[SourceRef, ...]
    relation: str = "="
    labels: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    language: str | None = None
    statement: str | None = None
    conditions: Mapping[str, Any] = field(default_factory=dict)
    condition_names: tuple[str, ...] = ()
    note: str | None = None

    def numbers(self) -> list[float | int]:
        """Every number the value holds (a scalar, list items, or range bounds)."""
        if self.value is None:
            return []
        if isinstance(self.value, list):
            return list(self.value)
        if isinstance(self.value, dict):
            return [self.value["min"], self.value["max"]]
        return [self.value]

    def to_dict(self, sources: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """A plain, JSON-ready copy (conditions resolved; source files named if given)."""
        refs = []
        for ref in self.sources:
            entry: dict[str, Any] = {
                "source": ref.source,
                "section": ref.section,
                "quote": ref.quote,
            }
            if sources and ref.source in sources:
                entry["file"] = sources[ref.source]["file"]
            refs.append(entry)
        out: dict[str, Any] = {
            "id": self.id,
            "experiment": self.experiment,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "relation": self.relation,
            "params": dict(self.params),
            "conditions": dict(self.conditions),
            "sources": refs,
        }
        for key in ("labels", "language", "statement", "note"):
            val = getattr(self, key)
            if val:
                out[key] = list(val) if isinstance(val, tuple) else val
        return out


@dataclass(frozen=True)
class Published:
    path: Path
    sources: Mapping[str, Mapping[str, Any]]
    conditions: Mapping[str, Mapping[str, Any]]
    experiments: Mapping[str, Mapping[str, Any]]
    figures: tuple[Figure, ...]

    def figure(self, figure_id: str) -> Figure:
        for fig in self.figures:
            if fig.id == figure_id:
                return fig
        raise KeyError(
            f"no published figure with id {figure_id!r} in {self.path}; "
            f"list them with `python -m kmesh_lab.published list`"
        )

    def by_experiment(self, experiment_id: str) -> list[Figure]:
        """Figures of one experiment (e.g. "cpu.2_1"), or of a family ("cpu")."""
        if experiment_id not in self.experiments and not any(
            exp.startswith(experiment_id + ".") for exp in self.experiments
        ):
            raise KeyError(
                f"unknown experiment id {experiment_id!r}; known: "
                f"{', '.join(sorted(self.experiments))} (see {self.path})"
            )
        return [
            fig
            for fig in self.figures
            if fig.experiment == experiment_id or fig.experiment.startswith(experiment_id + ".")
        ]


def _fail(where: str, field_name: str, problem: str, path: Path) -> PublishedError:
    return PublishedError(
        f"{path}: {where}: field {field_name!r} {problem}. Fix that entry in {path.name} "
        f"(its rules are in the comment at the top of the file)."
    )


def _is_number(val: object) -> bool:
    return (
        isinstance(val, int | float) and not isinstance(val, bool) and math.isfinite(val)  # type: ignore[arg-type]
    )


def _check_value(raw: object, where: str, path: Path) -> Value:
    if raw is None or _is_number(raw):
        return raw  # type: ignore[return-value]
    if isinstance(raw, list) and raw and all(_is_number(v) for v in raw):
        return raw
    if (
        isinstance(raw, dict)
        and set(raw) == {"min", "max"}
        and all(_is_number(v) for v in raw.values())
    ):
        if raw["min"] > raw["max"]:
            raise _fail(where, "value", "is a range whose min is above its max", path)
        return raw
    raise _fail(
        where,
        "value",
        f"is {raw!r}; it must be a number, a non-empty list of numbers, "
        "a {min, max} range, or null with a statement",
        path,
    )


def _req_str(entry: Mapping[str, Any], key: str, where: str, path: Path) -> str:
    val = entry.get(key)
    if not isinstance(val, str) or not val.strip():
        raise _fail(where, key, "is missing or not a non-empty string", path)
    return val


def _parse_figure(
    raw: object,
    index: int,
    doc: Mapping[str, Any],
    path: Path,
) -> Figure:
    if not isinstance(raw, dict):
        raise _fail(f"figures[{index}]", "(entry)", "is not a mapping", path)
    where = f"figure {raw.get('id', f'#{index}')!r}"
    unknown = set(raw) - _FIGURE_KEYS
    if unknown:
        raise _fail(where, sorted(unknown)[0], "is not a known field", path)
    fig_id = _req_str(raw, "id", where, path)
    if not _ID_RE.match(fig_id):
        raise _fail(where, "id", "must be dotted lower-case words like cpu.1_1.ebpf_cpu", path)
    experiment = _req_str(raw, "experiment", where, path)
    if experiment not in doc["experiments"]:
        raise _fail(where, "experiment", f"names {experiment!r}, not listed in experiments:", path)
    if not fig_id.startswith(experiment + "."):
        raise _fail(where, "id", f"must start with its experiment id {experiment!r}", path)
    metric = _req_str(raw, "metric", where, path)
    unit = _req_str(raw, "unit", where, path)
    if "value" not in raw:
        raise _fail(where, "value", "is missing (use null with a statement)", path)
    value = _check_value(raw["value"], where, path)
    statement = raw.get("statement")
    if statement is not None and not isinstance(statement, str):
        raise _fail(where, "statement", "must be a string", path)
    if value is None and not statement:
        raise _fail(where, "statement", "is required when value is null", path)
    labels = raw.get("labels", [])
    if labels:
        if not isinstance(value, list) or not isinstance(labels, list):
            raise _fail(where, "labels", "is only allowed with a list value", path)
        if len(labels) != len(value) or not all(isinstance(x, str) for x in labels):
            raise _fail(where, "labels", "must name each item of the value list", path)
    relation = raw.get("relation", "=")
    if relation not in RELATIONS:
        raise _fail(where, "relation", f"is {relation!r}; use one of {RELATIONS}", path)
    language = raw.get("language")
    if language is not None and language not in LANGUAGES:
        raise _fail(where, "language", f"is {language!r}; use one of {LANGUAGES}", path)
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise _fail(where, "params", "must be a mapping", path)
    names = raw.get("conditions", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(where, "conditions", "must be a list of condition-set names", path)
    merged: dict[str, Any] = {}
    for name in names:
        if name not in doc["conditions"]:
            raise _fail(where, "conditions", f"names {name!r}, not defined in conditions:", path)
        merged.update(doc["conditions"][name])
    raw_sources = raw.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise _fail(where, "sources", "must be a non-empty list", path)
    refs = []
    for j, ref in enumerate(raw_sources):
        ref_where = f"{where} sources[{j}]"
        if not isinstance(ref, dict):
            raise _fail(ref_where, "(entry)", "is not a mapping", path)
        src = _req_str(ref, "source", ref_where, path)
        if src not in doc["sources"]:
            raise _fail(ref_where, "source", f"names {src!r}, not defined in sources:", path)
        refs.append(
            SourceRef(
                source=src,
                section=_req_str(ref, "section", ref_where, path),
                quote=_req_str(ref, "quote", ref_where, path),
            )
        )
    languages = {doc["sources"][r.source].get("language") for r in refs}
    if language is not None and language not in languages:
        raise _fail(where, "language", f"is {language!r} but no source is in that language", path)
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise _fail(where, "note", "must be a string", path)
    return Figure(
        id=fig_id,
        experiment=experiment,
        metric=metric,
        value=value,
        unit=unit,
        sources=tuple(refs),
        relation=relation,
        labels=tuple(labels),
        params=params,
        language=language,
        statement=statement,
        conditions=merged,
        condition_names=tuple(names),
        note=note,
    )


def parse(doc: object, path: Path) -> Published:
    """Validate an already-loaded YAML document."""
    if not isinstance(doc, dict):
        raise _fail("top level", "(document)", "is not a mapping", path)
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise _fail("top level", "schema_version", f"is {doc.get('schema_version')!r}, not 1", path)
    for section in ("sources", "conditions", "experiments"):
        if not isinstance(doc.get(section), dict) or not doc[section]:
            raise _fail("top level", section, "is missing or not a non-empty mapping", path)
        for key, val in doc[section].items():
            if not isinstance(val, dict):
                raise _fail(f"{section}.{key}", "(entry)", "is not a mapping", path)
    for key, src in doc["sources"].items():
        _req_str(src, "file", f"sources.{key}", path)
        _req_str(src, "title", f"sources.{key}", path)
        if src.get("language") not in LANGUAGES:
            raise _fail(f"sources.{key}", "language", f"must be one of {LANGUAGES}", path)
    for key, exp in doc["experiments"].items():
        _req_str(exp, "suite", f"experiments.{key}", path)
        _req_str(exp, "title", f"experiments.{key}", path)
    raw_figures = doc.get("figures")
    if not isinstance(raw_figures, list) or not raw_figures:
        raise _fail("top level", "figures", "is missing or empty", path)
    figures = [_parse_figure(raw, i, doc, path) for i, raw in enumerate(raw_figures)]
    seen: set[str] = set()
    for fig in figures:
        if fig.id in seen:
            raise _fail(f"figure {fig.id!r}", "id", "is used twice; ids must be unique", path)
        seen.add(fig.id)
    return Published(
        path=path,
        sources=doc["sources"],
        conditions=doc["conditions"],
        experiments=doc["experiments"],
        figures=tuple(figures),
    )


def load(path: Path | str | None = None) -> Published:
    """Load and validate published.yml (default: $KMESH_LAB_PUBLISHED or the repo's)."""
    target = Path(path or os.environ.get(ENV_PATH) or DEFAULT_PATH)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise PublishedError(
            f"cannot read the published figures at {target}: {exc.strerror}; "
            f"run from a kmesh-lab checkout or set {ENV_PATH} to the file"
        ) from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PublishedError(f"{target} is not valid YAML: {exc}; fix the syntax there") from exc
    return parse(doc, target)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def number_forms(num: float | int) -> list[str]:
    """How a number may be written in a source: 12.99, 0.08 (in 0.080), 65535, "five"."""
    if isinstance(num, float) and num.is_integer():
        num = int(num)
    forms = [str(num) if isinstance(num, int) else repr(num)]
    if isinstance(num, int) and num in _NUMBER_WORDS:
        forms.append(_NUMBER_WORDS[num])
    return forms


def _contains_number(quote: str, num: float | int) -> bool:
    # Digit groups ("65,535", "1,000") are compared without their separators.
    plain = quote.replace(",", "")
    lowered = plain.lower()
    for form in number_forms(num):
        if form.isalpha():
            if re.search(rf"\b{form}\b", lowered):
                return True
        elif "." in form:
            # 0.08 is also written 0.080.
            if re.search(rf"(?<![\d.]){re.escape(form)}0*(?!\d)", plain):
                return True
        elif re.search(rf"(?<![\d.]){re.escape(form)}(?!\d|\.\d)", plain):
            return True
    return False


def check_sources(published: Published, sources_root: Path | None = None) -> list[str]:
    """Problems found when checking each quote against its source file (empty = all good).

    A quote must occur in its source (whitespace-insensitive), and every number of the
    figure must occur in at least one of the figure's quotes.
    """
    root = sources_root or DEFAULT_SOURCES_ROOT
    texts: dict[str, str] = {}
    problems: list[str] = []
    for key, src in published.sources.items():
        file = root / src["file"]
        try:
            texts[key] = _normalise(file.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(f"source {key}: cannot read {file}: {exc.strerror}")
    for fig in published.figures:
        for ref in fig.sources:
            text = texts.get(ref.source)
            if text is not None and _normalise(ref.quote) not in text:
                problems.append(f"figure {fig.id}: quote not found in {ref.source}: {ref.quote!r}")
        for num in fig.numbers():
            if not any(_contains_number(ref.quote, num) for ref in fig.sources):
                problems.append(f"figure {fig.id}: the number {num} appears in none of its quotes")
    return problems


def _format_value(fig: Figure) -> str:
    if fig.value is None:
        return "-"
    if isinstance(fig.value, dict):
        return f"{fig.value['min']}..{fig.value['max']}"
    if isinstance(fig.value, list):
        if fig.labels:
            return ", ".join(f"{lab}={v}" for lab, v in zip(fig.labels, fig.value, strict=True))
        return ", ".join(str(v) for v in fig.value)
    return str(fig.value)


def _main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.published", description=__doc__)
    parser.add_argument("--file", type=Path, help="published.yml to use")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate the schema and every quote")
    check.add_argument("--sources", type=Path, help="directory the source files live under")
    lister = sub.add_parser("list", help="print figures")
    lister.add_argument("--experiment", help="only this experiment id (or family, e.g. cpu)")
    lister.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        published = load(args.file)
        if args.command == "check":
            problems = check_sources(published, args.sources)
            for problem in problems:
                print(problem, file=sys.stderr)
            print(
                f"{len(published.figures)} figures, {len(published.experiments)} experiments, "
                f"{len(problems)} problems"
            )
            return 1 if problems else 0
        figs = published.by_experiment(args.experiment) if args.experiment else published.figures
    except (PublishedError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps([f.to_dict(published.sources) for f in figs], indent=2, ensure_ascii=False)
        )
    else:
        for fig in figs:
            print(f"{fig.id}\t{fig.relation} {_format_value(fig)} {fig.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
