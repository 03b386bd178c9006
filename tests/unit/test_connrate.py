"""kmesh_lab.connrate's pure parts: the command line, reading the generator's JSON, and the
error when the host has no compiler (building and running it: tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmesh_lab import connrate

OUT = (
    '{"tool": "connrate", "target": "10.96.0.1:80", "workers": 2, "duration_s": 4.0001, '
    '"connections": 80000, "errors": 3, "connections_per_s": 19999.5, '
    '"errors_by_errno": {"ECONNREFUSED": 3}}\n'
)


def test_argv_bounds_every_run() -> None:
    argv = connrate.argv(Path("/x/connrate"), "10.96.0.1:80", 4, 2, 2000)
    assert argv == ["/x/connrate", "-t", "4", "-c", "2", "-timeout", "2000", "10.96.0.1:80"]


def test_parse_reads_the_last_line() -> None:
    data = connrate.parse("a warning\n" + OUT)
    assert data["connections"] == 80000 and data["errors_by_errno"] == {"ECONNREFUSED": 3}
    assert data["connections_per_s"] == pytest.approx(80000 / 4.0001, rel=1e-3)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no result object"),
        ("not json", "no JSON"),
        ('{"tool": "fortio"}', "no result object"),
        ('{"tool": "connrate", "target": "a:1"}', "lacks"),
    ],
)
def test_parse_names_what_is_wrong(text: str, match: str) -> None:
    with pytest.raises(connrate.ConnrateError, match=match):
        connrate.parse(text)


def test_build_without_a_compiler_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connrate.shutil, "which", lambda _name: None)
    with pytest.raises(connrate.ConnrateError, match="install gcc"):
        connrate.build(tmp_path)
    assert not list(tmp_path.iterdir())


def test_an_up_to_date_binary_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / connrate.BINARY
    binary.write_text("built before")
    monkeypatch.setattr(connrate.shutil, "which", lambda _name: None)  # would fail if rebuilt
    assert connrate.build(tmp_path) == binary and binary.read_text() == "built before"
