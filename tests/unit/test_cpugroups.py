"""The CPU suite's app cgroups: names, limits, pruning, refusing to remove busy groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmesh_lab import cgroups, cpugroups


@pytest.fixture
def hybrid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> cgroups.Layout:
    """A hybrid layout on a temporary tree; v1 cpu directories get the kernel's files."""
    v2, cpu = tmp_path / "unified", tmp_path / "cpu"
    (v2 / "kmlab").mkdir(parents=True)
    (cpu / "kmlab").mkdir(parents=True)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)
        if self.is_relative_to(cpu):
            (self / "cpu.cfs_quota_us").write_text("-1\n")
            (self / "cpu.cfs_period_us").write_text("100000\n")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    return cgroups.Layout(v2_root=v2, v1_cpu_root=cpu)


def test_group_path_is_beside_the_pods() -> None:
    assert cpugroups.group_path("kmlab", "app-0") == "kmlab/cpu-app-0"


@pytest.mark.parametrize("name", ["", "App", "a/b", "../x", "a" * 32, "-x"])
def test_bad_names_are_refused_with_an_example(name: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. app-0"):
        cpugroups.check_name(name)


def test_ensure_creates_limits_and_prunes_the_rest(
    hybrid: cgroups.Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    removed: list[str] = []
    monkeypatch.setattr(cgroups, "procs", lambda layout, group: set())

    def remove_tree(layout: cgroups.Layout, group: str, timeout: float = 5.0) -> bool:
        removed.append(group)
        for path in layout.limit_dirs(group):
            for f in path.iterdir():
                f.unlink()
            path.rmdir()
        return True

    monkeypatch.setattr(cgroups, "remove_tree", remove_tree)
    changed = cpugroups.ensure(hybrid, "kmlab", {"app-0": 250, "app-1": 250, "probe": 0})
    assert changed == {"app-0": True, "app-1": True, "probe": True}
    assert cpugroups.limits(hybrid, "kmlab") == {"app-0": 250, "app-1": 250, "probe": 0}
    # The same wish again changes nothing; a smaller one removes what is no longer wanted.
    assert not any(
        cpugroups.ensure(hybrid, "kmlab", {"app-0": 250, "app-1": 250, "probe": 0}).values()
    )
    changed = cpugroups.ensure(hybrid, "kmlab", {"app-0": 1000})
    assert changed == {"app-0": True, "app-1": True, "probe": True}
    assert removed == ["kmlab/cpu-app-1", "kmlab/cpu-probe"]
    assert cpugroups.limits(hybrid, "kmlab") == {"app-0": 1000}
    # The lab's own pod directories are never listed nor touched.
    (hybrid.v2_root / "kmlab" / "client-0").mkdir()
    assert cpugroups.existing(hybrid, "kmlab") == ["app-0"]


def test_remove_refuses_while_a_load_runs(
    hybrid: cgroups.Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpugroups.ensure(hybrid, "kmlab", {"app-0": 0})
    monkeypatch.setattr(cgroups, "procs", lambda layout, group: {4242})
    with pytest.raises(RuntimeError, match=r"still holds processes \[4242\].*wait"):
        cpugroups.remove(hybrid, "kmlab")


def test_ensure_without_the_lab_names_the_fix(tmp_path: Path) -> None:
    layout = cgroups.Layout(v2_root=tmp_path, v1_cpu_root=None)
    with pytest.raises(RuntimeError, match=r"playbooks/lab\.yml"):
        cpugroups.ensure(layout, "kmnolab", {"app-0": 0})


def test_parse_group_arg() -> None:
    assert cpugroups.parse_group_arg("app-3=250") == ("app-3", 250)
    with pytest.raises(ValueError, match="NAME=MILLICORES"):
        cpugroups.parse_group_arg("app-3")
    with pytest.raises(ValueError, match="negative"):
        cpugroups.parse_group_arg("app-3=-5")


def test_exec_of_a_missing_instance_names_the_fix(tmp_path: Path) -> None:
    layout = cgroups.Layout(v2_root=tmp_path, v1_cpu_root=None)
    state = {"prefix": "kmlab", "pods": {"client-0": {"netns": "kmlab-client-0"}}}
    with pytest.raises(RuntimeError, match="cpugroups ensure --group app-9"):
        cpugroups.join_and_exec(layout, state, "client-0", "app-9", ["true"])
    with pytest.raises(RuntimeError, match="no pod 'client-7'"):
        cpugroups.join_and_exec(layout, state, "client-7", "app-9", ["true"])
