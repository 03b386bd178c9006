"""kernel_build role logic: patch series order and rejects, config fragment verification,
and its argument checks (bad variables fail naming the variable). No root needed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles/kernel_build"
SCENARIO = REPO / "molecule/kernel/files"


def _load_lib():
    path = ROLE / "module_utils/kernel_build_lib.py"
    spec = importlib.util.spec_from_file_location("kernel_build_lib", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kernel_build_lib"] = mod  # dataclasses resolve annotations via sys.modules
    spec.loader.exec_module(mod)
    return mod


kb = _load_lib()
needs_patch = pytest.mark.skipif(shutil.which("patch") is None, reason="GNU patch not installed")

MAKEFILE = (
    "# SPDX-License-Identifier: GPL-2.0\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\n"
    "EXTRAVERSION =\nNAME = Curry Ramen\n"
)


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "Makefile").write_text(MAKEFILE)
    (tree / "Kconfig").write_text((REPO / "tests/unit/data/kernel_kconfig_head").read_text())
    return tree


# ---------------------------------------------------------------- series


def test_series_is_sorted_patch_files_without_series_file(tmp_path: Path) -> None:
    for name in ("0002-b.patch", "0001-a.patch", "notes.txt", "0010-c.patch"):
        (tmp_path / name).write_text(name)
    assert [p.name for p in kb.read_series(tmp_path)] == [
        "0001-a.patch",
        "0002-b.patch",
        "0010-c.patch",
    ]


def test_series_file_sets_order_and_skips_comments(tmp_path: Path) -> None:
    for name in ("a.patch", "b.diff"):
        (tmp_path / name).write_text(name)
    (tmp_path / "series").write_text("# quilt series\nb.diff -p1\n\na.patch  # first written\n")
    assert [p.name for p in kb.read_series(tmp_path)] == ["b.diff", "a.patch"]


def test_series_file_naming_a_missing_patch_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("a.patch\nmissing.patch\n")
    (tmp_path / "a.patch").write_text("x")
    with pytest.raises(kb.KernelBuildError, match=r"series:2 names missing.patch"):
        kb.read_series(tmp_path)


def test_series_options_other_than_p1_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.patch").write_text("x")
    (tmp_path / "series").write_text("a.patch -p0\n")
    with pytest.raises(kb.KernelBuildError, match=r"options -p0 for a.patch"):
        kb.read_series(tmp_path)


def test_empty_or_missing_patch_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(kb.KernelBuildError, match="no patches in"):
        kb.read_series(tmp_path)
    with pytest.raises(kb.KernelBuildError, match="is not a directory"):
        kb.read_series(tmp_path / "nope")


def test_digest_follows_content_and_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.patch", tmp_path / "b.patch"
    a.write_text("one")
    b.write_text("two")
    first = kb.series_digest([a, b])
    assert first == kb.series_digest([a, b])
    assert first != kb.series_digest([b, a])
    b.write_text("two, edited")
    assert first != kb.series_digest([a, b])


# ---------------------------------------------------------------- rejects

PATCH_OUTPUT = """checking file Kconfig
checking file Makefile
Hunk #2 FAILED at 40.
1 out of 2 hunks FAILED
can't find file to patch at input line 30
"""

TWO_FILES = """--- a/Kconfig
+++ b/Kconfig
@@ -1,2 +1,2 @@
-x
+y
--- a/Makefile\t2024-01-01 00:00:00
+++ b/Makefile\t2024-01-01 00:00:00
@@ -1,1 +1,1 @@
-first
+FIRST
@@ -40,2 +40,2 @@ some function
 keep
-second
+SECOND
"""


def test_failed_hunks_are_parsed_with_their_file() -> None:
    assert kb.failed_hunks(PATCH_OUTPUT) == [
        kb.FailedHunk("Makefile", 2),
        kb.FailedHunk(None, None),
    ]


def test_hunk_text_picks_the_numbered_hunk_of_the_file() -> None:
    text = kb.hunk_text(TWO_FILES, "Makefile", 2)
    assert text == "@@ -40,2 +40,2 @@ some function\n keep\n-second\n+SECOND"
    assert "not found" in kb.hunk_text(TWO_FILES, "Makefile", 3)


@needs_patch
def test_series_applies_in_order(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    patches = kb.read_series(SCENARIO / "patches")
    assert kb.apply_series(tree, patches) == [p.name for p in patches]
    assert "EXTRAVERSION = -kmlab-test\n" in (tree / "Makefile").read_text()
    assert "config KMESH_LAB_TEST\n" in (tree / "Kconfig").read_text()
    assert not list(tree.glob("*.orig")) and not list(tree.glob("*.rej"))


@needs_patch
def test_reject_names_patch_and_hunk_and_leaves_tree_unpatched(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    before = {p.name: p.read_text() for p in tree.iterdir()}
    with pytest.raises(kb.KernelBuildError) as err:
        kb.apply_series(tree, kb.read_series(SCENARIO / "broken-patches"))
    msg = str(err.value)
    assert msg.startswith("patch 0002-stale-context.patch does not apply")
    assert "rejected hunk #1 of Makefile:\n@@ -1,3 +1,3 @@\n # SPDX" in msg
    assert "-VERSION = 5\n+VERSION = 7" in msg
    assert "the tree was left unpatched" in msg
    # 0001 applied cleanly first and was reversed: the tree is as it was, no backups left
    assert {p.name: p.read_text() for p in tree.iterdir()} == before


@needs_patch
def test_missing_file_and_already_applied_are_explained(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    patches = tmp_path / "p"
    patches.mkdir()
    (patches / "0001-new-file-missing.patch").write_text(
        "--- a/drivers/none.c\n+++ b/drivers/none.c\n@@ -1 +1 @@\n-a\n+b\n"
    )
    with pytest.raises(kb.KernelBuildError, match="does not exist in the source tree"):
        kb.apply_series(tree, kb.read_series(patches))
    (patches / "0001-new-file-missing.patch").unlink()
    shutil.copy(SCENARIO / "patches/0001-makefile-version-suffix.patch", patches)
    kb.apply_series(tree, kb.read_series(patches))
    with pytest.raises(kb.KernelBuildError, match="already applied"):
        kb.apply_series(tree, kb.read_series(patches))


# ---------------------------------------------------------------- config fragments

FINAL = """#
# Automatically generated file; DO NOT EDIT.
CONFIG_BPF_SYSCALL=y
CONFIG_CGROUP_BPF=y
CONFIG_IKCONFIG=m
# CONFIG_DEBUG_INFO_BTF is not set
CONFIG_LOCALVERSION="-kmlab"
CONFIG_NR_CPUS=64
"""


def test_parse_config_reads_values_and_not_set() -> None:
    values = kb.parse_config(FINAL)
    assert values["CONFIG_BPF_SYSCALL"] == "y"
    assert values["CONFIG_DEBUG_INFO_BTF"] == "n"
    assert values["CONFIG_LOCALVERSION"] == '"-kmlab"'
    assert values["CONFIG_NR_CPUS"] == "64"


def test_malformed_fragment_line_is_named() -> None:
    with pytest.raises(kb.KernelBuildError, match=r"my.config:2: 'BPF_SYSCALL=y' is not"):
        kb.parse_config("CONFIG_A=y\nBPF_SYSCALL=y\n", "my.config")


def test_every_dropped_option_is_named_with_its_fragment() -> None:
    frags = [
        (
            "10-bpf.config",
            "CONFIG_BPF_SYSCALL=y\nCONFIG_CGROUP_BPF=y\nCONFIG_BPF_JIT=y\nCONFIG_IKCONFIG=y\n",
        ),
        ("20-btf.config", "CONFIG_DEBUG_INFO_BTF=y\n# CONFIG_NR_CPUS is not set\n"),
        ("40-localversion.config", 'CONFIG_LOCALVERSION="-kmlab"\n# CONFIG_FOO is not set\n'),
    ]
    lost = kb.dropped(frags, FINAL)
    assert [(d.name, d.wanted, d.got, d.fragment) for d in lost] == [
        ("CONFIG_BPF_JIT", "y", None, "10-bpf.config"),
        ("CONFIG_IKCONFIG", "y", "m", "10-bpf.config"),
        ("CONFIG_DEBUG_INFO_BTF", "y", "n", "20-btf.config"),
        ("CONFIG_NR_CPUS", "n", "64", "20-btf.config"),
    ]
    msg = kb.describe_dropped(lost, "/x/.config")
    assert msg.startswith("4 option(s) asked for by the config fragments did not survive")
    assert "CONFIG_BPF_JIT: 10-bpf.config asks y, but it is absent from the final .config" in msg
    assert "CONFIG_IKCONFIG: 10-bpf.config asks y, but it is m in the final .config" in msg


def test_later_fragment_wins() -> None:
    frags = [("a.config", "CONFIG_X=y\n"), ("b.config", "# CONFIG_X is not set\n")]
    assert kb.requested(frags) == {"CONFIG_X": ("n", "b.config")}
    assert kb.dropped(frags, "CONFIG_Y=y\n") == []


def test_role_fragments_parse() -> None:
    for frag in (ROLE / "files/fragments").glob("*.config"):
        assert kb.parse_config(frag.read_text(), frag.name), frag


# ---------------------------------------------------------------- role arguments


def _run_role(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: kernel_build\n"
    )
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [
            str(REPO / ".venv/bin/ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            str(play),
            "-e",
            f"kernel_build_cache_dir={tmp_path / 'cache'}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


needs_ansible = pytest.mark.skipif(
    not (REPO / ".venv/bin/ansible-playbook").exists(), reason="make bootstrap first"
)


@needs_ansible
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["-e", "kernel_build_config_base=allyesconfig"], "kernel_build_config_base"),
        (["-e", "kernel_build_source=git"], "kernel_build_source"),
        (["-e", "kernel_build_target=zImage"], "kernel_build_target"),
        (["-e", "kernel_build_btf=maybe"], "kernel_build_btf"),
        (
            [
                "-e",
                "kernel_build_source=tarball",
                "-e",
                "kernel_build_tarball_url=file:///x.tar.xz",
            ],
            "kernel_build_tarball_sha256",
        ),
        (["-e", "kernel_build_source=tree"], "kernel_build_tree"),
        (["-e", "kernel_build_name=../escape"], "kernel_build_name"),
    ],
)
def test_bad_variable_fails_naming_it(tmp_path: Path, extra: list[str], named: str) -> None:
    proc = _run_role(tmp_path, *extra)
    assert proc.returncode != 0
    assert named in proc.stdout + proc.stderr
    assert not (tmp_path / "cache").exists()  # failed before creating anything


@needs_ansible
def test_role_syntax_check_covers_the_off_by_default_tasks(tmp_path: Path) -> None:
    """install/boot_default/reboot are statically imported, so a syntax check parses them
    (they are off by default and not run here: no GRUB on this host, and it is shared)."""
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.import_role:\n        name: kernel_build\n"
    )
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"))
    proc = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", "--syntax-check", str(play)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks = (ROLE / "tasks/main.yml").read_text()
    for name in ("install", "boot_default", "reboot"):
        assert f"import_tasks: {name}.yml" in tasks


@needs_ansible
@needs_patch
@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync not installed")
def test_tree_source_is_copied_and_a_reject_leaves_the_copy_unpatched(tmp_path: Path) -> None:
    """kernel_build_source=tree (an openEuler-style checkout): the tree is copied, never
    modified; a rejected patch fails the role naming the patch and hunk."""
    user_tree = _tree(tmp_path)
    before = {p.name: p.read_text() for p in user_tree.iterdir()}
    proc = _run_role(
        tmp_path,
        "-e",
        "kernel_build_source=tree",
        "-e",
        f"kernel_build_tree={user_tree}",
        "-e",
        "kernel_build_install_deps=false",
        "-e",
        f"kernel_build_patches_dir={SCENARIO / 'broken-patches'}",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "patch 0002-stale-context.patch does not apply" in out
    assert "-VERSION = 5" in out
    copy = tmp_path / "cache/default/src"
    assert (copy / "Makefile").read_text() == MAKEFILE  # 0001 reversed in the copy
    assert {p.name: p.read_text() for p in user_tree.iterdir()} == before
    assert not (tmp_path / "cache/default/tree.stamp").exists()  # next run starts afresh
