"""The logic of the kernel_build role: patch series and their rejects, config fragments.

Shipped as role module_utils so the role's modules carry it to any build host (a VM, an
openEuler box) without the lab's Python package there; stdlib only. Unit tests import it
directly (tests/unit/test_kernel_build.py).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERIES_FILE = "series"
PATCH_GLOB = "*.patch"


class KernelBuildError(Exception):
    """A problem the user must fix; the message says what and how."""


# ---------------------------------------------------------------- patch series


def read_series(patches_dir: Path) -> list[Path]:
    """The patches to apply, in order: the `series` file (quilt style) or sorted *.patch."""
    if not patches_dir.is_dir():
        raise KernelBuildError(
            f"kernel_build_patches_dir {patches_dir} is not a directory: "
            "point it at a directory of *.patch files (optionally with a `series` file)"
        )
    series = patches_dir / SERIES_FILE
    if series.is_file():
        patches = []
        for lineno, raw in enumerate(series.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            # quilt allows per-patch options after the name (e.g. -p1); only -p1 is supported
            name, *opts = line.split()
            if opts and opts != ["-p1"]:
                raise KernelBuildError(
                    f"{series}:{lineno}: options {' '.join(opts)} for {name} are not supported: "
                    "write patches with a/ b/ prefixes (-p1) and drop the options"
                )
            path = patches_dir / name
            if not path.is_file():
                raise KernelBuildError(
                    f"{series}:{lineno} names {name}, which is not in {patches_dir}: "
                    "add the file or remove the line"
                )
            patches.append(path)
    else:
        patches = sorted(patches_dir.glob(PATCH_GLOB))
    if not patches:
        raise KernelBuildError(
            f"no patches in {patches_dir}: expected *.patch files or a `series` file; "
            "leave kernel_build_patches_dir empty to build without patches"
        )
    return patches


def series_digest(patches: list[Path]) -> str:
    """Identity of a series: names, order and contents (an edited patch is a new series)."""
    h = hashlib.sha256()
    for path in patches:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class FailedHunk:
    file: str | None  # None when patch could not find the file at all
    hunk: int | None


_CHECKING = re.compile(r"^(?:checking|patching) file (.+)$")
_FAILED = re.compile(r"^Hunk #(\d+) FAILED at \d+")


def failed_hunks(output: str) -> list[FailedHunk]:
    """The hunks GNU patch reported as failed, with the file each belongs to."""
    found: list[FailedHunk] = []
    current: str | None = None
    for line in output.splitlines():
        if m := _CHECKING.match(line):
            current = m.group(1).strip().strip("'")
        elif m := _FAILED.match(line):
            found.append(FailedHunk(current, int(m.group(1))))
        elif line.startswith("can't find file to patch"):
            found.append(FailedHunk(None, None))
    return found


def _diff_path(header: str) -> str:
    """`--- a/Makefile\t2024-...` -> Makefile (the -p1 path)."""
    name = header[4:].split("\t", 1)[0].strip()
    return name.split("/", 1)[1] if "/" in name else name


def hunk_text(patch_text: str, file: str, number: int) -> str:
    """Hunk `number` (1-based) of `file` in a unified diff, with its @@ header."""
    lines = patch_text.splitlines()
    target = None
    count = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            new, old = _diff_path(lines[i + 1]), _diff_path(line)
            target = file in (new, old)
            count = 0
            i += 2
            continue
        if target and line.startswith("@@"):
            count += 1
            if count == number:
                body = [line]
                for nxt in lines[i + 1 :]:
                    if nxt.startswith(("@@", "--- ", "diff ")):
                        break
                    body.append(nxt)
                return "\n".join(body)
        i += 1
    return f"(hunk #{number} of {file} not found in the patch text)"


def describe_reject(patch: Path, output: str) -> str:
    """What failed and the hunks themselves, for the error message."""
    text = patch.read_text(errors="replace")
    parts = [f"patch {patch.name} does not apply"]
    hunks = failed_hunks(output)
    for fh in hunks:
        if fh.file is None or fh.hunk is None:
            parts.append("a file it patches does not exist in the source tree (wrong -p level?)")
        else:
            parts.append(
                f"rejected hunk #{fh.hunk} of {fh.file}:\n{hunk_text(text, fh.file, fh.hunk)}"
            )
    if "Reversed (or previously applied) patch detected" in output:
        parts.append("it is already applied to this source (remove it from the series)")
    if not hunks and "Reversed" not in output:
        parts.append(f"patch said:\n{output.strip()}")
    parts.append(
        f"fix: rebase {patch.name} onto this kernel source (or drop it from the series); "
        "the tree was left unpatched"
    )
    return "\n".join(parts)


def _patch(tree: Path, patch: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "-d", str(tree), "-i", str(patch), *extra],
        capture_output=True,
        text=True,
        check=False,
    )


def apply_series(tree: Path, patches: list[Path]) -> list[str]:
    """Apply every patch or none: each is dry-run first; on a reject the applied ones are
    reversed, so the tree is never left half-patched. Returns the applied names."""
    applied: list[Path] = []
    for patch in patches:
        check = _patch(tree, patch, "--dry-run")
        if check.returncode == 0:
            done = _patch(tree, patch, "--no-backup-if-mismatch")
            if done.returncode == 0:
                applied.append(patch)
                continue
            check = done  # dry run passed but the real run failed: report that output
        for prev in reversed(applied):
            _patch(tree, prev, "-R", "--no-backup-if-mismatch")
        raise KernelBuildError(describe_reject(patch, check.stdout + check.stderr))
    return [p.name for p in applied]


# ---------------------------------------------------------------- config fragments

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text: str, source: str = "config") -> dict[str, str]:
    """CONFIG_X=v and `# CONFIG_X is not set` (as "n"); other comments and blanks skipped.
    A line that is neither is an error naming the file and line (a typo would be ignored
    by Kconfig without a word)."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if m := _SET.match(line):
            values[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            values[m.group(1)] = "n"
        elif line and not line.startswith("#"):
            raise KernelBuildError(
                f"{source}:{lineno}: {raw!r} is not a config line: write CONFIG_NAME=value "
                "or '# CONFIG_NAME is not set'"
            )
    return values


@dataclass(frozen=True)
class Dropped:
    name: str
    wanted: str
    got: str | None  # None: absent from the final .config (dependencies unmet or no such symbol)
    fragment: str

    def describe(self) -> str:
        got = (
            "absent from the final .config (a dependency is off, or the symbol does not "
            "exist in this kernel)"
            if self.got is None
            else f"{self.got} in the final .config (a dependency or a select overrode it)"
        )
        return f"{self.name}: {self.fragment} asks {self.wanted}, but it is {got}"


def requested(fragments: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """name -> (value, fragment) over (fragment name, text) pairs; a later fragment wins,
    as in merge_config.sh."""
    wanted: dict[str, tuple[str, str]] = {}
    for name, text in fragments:
        for key, value in parse_config(text, name).items():
            wanted[key] = (value, name)
    return wanted


def dropped(fragments: list[tuple[str, str]], final_text: str) -> list[Dropped]:
    """Every option a fragment asked for that the final .config does not hold as asked."""
    final = parse_config(final_text, ".config")
    lost = []
    for key, (value, frag) in requested(fragments).items():
        got = final.get(key)
        if got == value or (value == "n" and got is None):
            continue
        lost.append(Dropped(key, value, got, frag))
    return lost


def describe_dropped(lost: list[Dropped], config_path: str) -> str:
    lines = [
        f"{len(lost)} option(s) asked for by the config fragments did not survive olddefconfig:"
    ]
    lines += [f"  {d.describe()}" for d in lost]
    lines.append(
        f"fix: enable what they depend on in a fragment (see `depends on` in their Kconfig, "
        f"e.g. via `make menuconfig` and search), or drop them; final config: {config_path}"
    )
    return "\n".join(lines)
