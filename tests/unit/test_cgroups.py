"""Pod cgroups on both layouts. This host is hybrid, so pure cgroup v2 is exercised on a
fake tree laid out like /sys/fs/cgroup (files the kernel would create are created here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmesh_lab import cgroups

V2_MOUNTS = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"
HYBRID_MOUNTS = (
    "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
    "cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0\n"
    "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
)
COMBINED_MOUNTS = (
    "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
)


def mounts(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mounts"
    path.write_text(text)
    return str(path)


def test_detect_pure_v2(tmp_path: Path) -> None:
    layout = cgroups.detect(mounts(tmp_path, V2_MOUNTS))
    assert layout.mode == "v2"
    assert layout.v2_root == Path("/sys/fs/cgroup")
    assert layout.limit_dirs("kmlab/a") == [Path("/sys/fs/cgroup/kmlab/a")]


def test_detect_hybrid_with_separate_cpuacct(tmp_path: Path) -> None:
    layout = cgroups.detect(mounts(tmp_path, HYBRID_MOUNTS))
    assert layout.mode == "hybrid"
    assert layout.v1_cpu_root == Path("/sys/fs/cgroup/cpu")
    assert layout.limit_dirs("kmlab/a") == [
        Path("/sys/fs/cgroup/unified/kmlab/a"),
        Path("/sys/fs/cgroup/cpu/kmlab/a"),
        Path("/sys/fs/cgroup/cpuacct/kmlab/a"),
    ]


def test_detect_combined_cpu_cpuacct_is_joined_once(tmp_path: Path) -> None:
    layout = cgroups.detect(mounts(tmp_path, COMBINED_MOUNTS))
    assert layout.v1_cpu_root == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert layout.v1_extra_roots == ()


def test_detect_without_cgroup2_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="mount -t cgroup2"):
        cgroups.detect(mounts(tmp_path, "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"))


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (250, 250), ("1000", 1000), (1500, 1500)])
def test_parse_millicores_accepts_whole_numbers(value: object, expected: int) -> None:
    assert cgroups.parse_millicores(value, "x") == expected


@pytest.mark.parametrize("value", ["abc", -1, "1.5", None, True, 2.5])
def test_parse_millicores_rejects_and_names_the_variable(value: object) -> None:
    with pytest.raises(ValueError, match="netns_lab_client_cpu_m"):
        cgroups.parse_millicores(value, "netns_lab_client_cpu_m")


def test_quota_is_millicores_of_the_period() -> None:
    assert cgroups.quota_us(1000) == cgroups.CFS_PERIOD_US
    assert cgroups.quota_us(250) == cgroups.CFS_PERIOD_US // 4


def fake_v2(tmp_path: Path, cpu_available: bool = True) -> cgroups.Layout:
    """A cgroup2 root as the kernel shows it; directories made by mkdir get their files
    from the helper below, the way the kernel would create them."""
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text(
        "cpuset cpu io memory pids\n" if cpu_available else "pids\n"
    )
    (root / "cgroup.subtree_control").write_text("\n")
    return cgroups.Layout(v2_root=root, v1_cpu_root=None)


def kernel_files(path: Path) -> None:
    (path / "cgroup.subtree_control").write_text("\n")
    (path / "cpu.max").write_text("max 100000\n")
    (path / "cgroup.procs").write_text("")


def test_pure_v2_limit_goes_to_cpu_max(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = fake_v2(tmp_path)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)
        for part in [self, *self.parents]:
            if part == layout.v2_root:
                break
            if not (part / "cpu.max").exists():
                kernel_files(part)

    real_write = Path.write_text

    def write_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
        # The kernel shows "+cpu" written to subtree_control back as "cpu".
        if self.name == "cgroup.subtree_control":
            data = data.lstrip("+")
        return real_write(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(Path, "write_text", write_text)
    assert cgroups.ensure_group(layout, "kmlab/client-0", 250) is True
    assert (layout.v2_root / "kmlab/client-0/cpu.max").read_text() == "25000 100000"
    # The cpu controller is delegated down to the pod on every level.
    assert "cpu" in (layout.v2_root / "cgroup.subtree_control").read_text()
    assert "cpu" in (layout.v2_root / "kmlab/cgroup.subtree_control").read_text()
    assert cgroups.limit_of(layout, "kmlab/client-0") == 250
    # A second run changes nothing; removing the limit writes "max".
    assert cgroups.ensure_group(layout, "kmlab/client-0", 250) is False
    assert cgroups.ensure_group(layout, "kmlab/client-0", 0) is True
    assert cgroups.limit_of(layout, "kmlab/client-0") == 0


def test_pure_v2_without_cpu_controller_says_how_to_fix(tmp_path: Path) -> None:
    layout = fake_v2(tmp_path, cpu_available=False)
    with pytest.raises(RuntimeError, match=r"\+cpu"):
        cgroups.ensure_group(layout, "kmlab/client-0", 500)


def test_hybrid_limit_goes_to_v1_cfs_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v2, cpu = tmp_path / "unified", tmp_path / "cpu"
    v2.mkdir()
    cpu.mkdir()
    layout = cgroups.Layout(v2_root=v2, v1_cpu_root=cpu)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)
        if self.is_relative_to(cpu):
            for part in [self, *self.parents]:
                if part == cpu:
                    break
                if not (part / "cpu.cfs_quota_us").exists():
                    (part / "cpu.cfs_quota_us").write_text("-1\n")
                    (part / "cpu.cfs_period_us").write_text("100000\n")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert cgroups.ensure_group(layout, "kmlab/client-0", 1500) is True
    assert (cpu / "kmlab/client-0/cpu.cfs_quota_us").read_text() == "150000"
    assert cgroups.limit_of(layout, "kmlab/client-0") == 1500
    assert cgroups.ensure_group(layout, "kmlab/client-0", 1500) is False
    assert (v2 / "kmlab/client-0").is_dir()  # BPF attaches on the v2 side


def test_usage_reads_cpu_stat(tmp_path: Path) -> None:
    layout = cgroups.Layout(v2_root=tmp_path, v1_cpu_root=None)
    (tmp_path / "kmlab").mkdir()
    (tmp_path / "kmlab/cpu.stat").write_text("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n")
    assert cgroups.usage_usec(layout, "kmlab") == 1234


def test_throttling_is_read_where_the_limit_lives(tmp_path: Path) -> None:
    v2, cpu = tmp_path / "unified", tmp_path / "cpu"
    (v2 / "kmlab").mkdir(parents=True)
    (cpu / "kmlab").mkdir(parents=True)
    (cpu / "kmlab/cpu.stat").write_text("nr_periods 40\nnr_throttled 7\nthrottled_time 9\n")
    assert cgroups.throttled_periods(cgroups.Layout(v2, cpu), "kmlab") == 7
    (v2 / "kmlab/cpu.stat").write_text("usage_usec 5\nnr_periods 3\nnr_throttled 2\n")
    assert cgroups.throttled_periods(cgroups.Layout(v2, None), "kmlab") == 2
