"""Read one run directory: every ``<suite>.json`` the suites wrote, as records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Suites the report knows, in the order it presents them.
KNOWN_SUITES = (
    "smoke",
    "suite_cpu",
    "suite_memory",
    "suite_scaling",
    "suite_latency",
    "suite_flood",
)


class RunError(RuntimeError):
    """A run directory or one of its files cannot be used."""


@dataclass(frozen=True)
class Run:
    run_id: str
    path: Path
    suites: dict[str, list[dict[str, Any]]]  # suite -> records (sorted by scenario)

    def records(self, suite: str) -> list[dict[str, Any]]:
        return self.suites.get(suite, [])

    def record(self, suite: str, scenario: str) -> dict[str, Any] | None:
        for rec in self.records(suite):
            if rec["scenario"] == scenario:
                return rec
        return None

    def all_records(self) -> list[dict[str, Any]]:
        return [rec for suite in sorted(self.suites) for rec in self.suites[suite]]


def load_run(run_dir: Path | str) -> Run:
    """Every results file of the run; a missing suite is simply absent."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(
            f"{path} is not a directory: pass --run-dir results/<run_id> "
            f"(ls results/ lists the runs)"
        )
    suites: dict[str, list[dict[str, Any]]] = {}
    for file in sorted(path.glob("*.json")):
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunError(
                f"{file} cannot be read as JSON ({exc}); re-run that suite or move the file away"
            ) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
            continue  # not a results file (e.g. a tool's raw output)
        suite = str(doc.get("suite") or file.stem)
        records = [r for r in doc["records"] if isinstance(r, dict) and "scenario" in r]
        suites[suite] = sorted(records, key=lambda r: str(r["scenario"]))
    return Run(run_id=path.name, path=path, suites=suites)
