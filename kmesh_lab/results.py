"""The results contract: ``results/<run_id>/<suite>.json``.

One file per suite and run::

    {
      "schema_version": 1,
      "suite": "suite_cpu",
      "run_id": "20261123T091900Z-3f2a",
      "updated": "2026-11-23T09:30:00Z",
      "records": [
        {
          "suite": "suite_cpu",
          "scenario": "1_1.limit_1000m",          # unique within the file
          "params": {...},                          # what was varied / configured
          "environment": {...},                     # environment() when first recorded
          "samples": [{...}, ...],                  # one object per repetition, as measured
          "summary": {"<metric>": {"n", "min", "median", "max", "mean"}, ...},
          "published": [{figure}, ...],             # copied from reference/published.yml
          "experiments": ["cpu.1_1"],               # which published experiments apply
          "expected_samples": 3,                    # optional: repetitions planned
          "recorded_at": "..."
        }
      ]
    }

``summary`` is computed here from ``samples`` (every key whose values are all numbers);
``published`` is copied from reference/published.yml by experiment id, never typed in
code. Writes are atomic (temp file + rename, under a lock), so an interrupted suite never
leaves a broken file, and a resumed suite asks ``done_scenarios`` what it can skip: a
scenario is done when it has ``expected_samples`` samples (or, without that field, as soon
as it is recorded).

CLI (what the Ansible suite roles call)::

    python -m kmesh_lab.results new-run-id
    python -m kmesh_lab.results record --run-dir D --suite S --scenario X
        [--params JSON] [--lab JSON] [--experiment ID ...] [--repetitions N] [--replace]
        [--sample JSON ...] [--sample-file F ...] [--load-json F ...]
    python -m kmesh_lab.results is-done --run-dir D --suite S --scenario X   # exit 0 / 1
    python -m kmesh_lab.results done --run-dir D --suite S                   # one per line
    python -m kmesh_lab.results show --run-dir D --suite S
    python -m kmesh_lab.results environment
    python -m kmesh_lab.results published --experiment ID [...]

``record`` appends the given samples to the scenario (creating it), so a suite can record
each repetition as soon as it is measured; ``--sample-file`` takes a JSON object or a list
of them (``-`` = stdin), ``--load-json`` a tools/fortio.sh result (flattened by
kmesh_lab.loadgen). Every error says what was wrong and how to fix it; exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import json
import math
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kmesh_lab import loadgen, published

SCHEMA_VERSION = 1
RECORD_KEYS = ("suite", "scenario", "params", "environment", "samples", "summary", "published")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=,+-]*$")

# Kernel options that decide what the lab can do or how its numbers compare.
KERNEL_CONFIG_KEYS = (
    "CONFIG_BPF",
    "CONFIG_BPF_SYSCALL",
    "CONFIG_BPF_JIT",
    "CONFIG_BPF_JIT_ALWAYS_ON",
    "CONFIG_CGROUP_BPF",
    "CONFIG_BPF_STREAM_PARSER",
    "CONFIG_NET_SOCK_MSG",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_MEMCG",
    "CONFIG_CGROUPS",
    "CONFIG_CFS_BANDWIDTH",
    "CONFIG_NF_TABLES",
    "CONFIG_IP_NF_IPTABLES",
    "CONFIG_NETFILTER_XT_MATCH_STATISTIC",
    "CONFIG_NF_NAT",
    "CONFIG_PREEMPT",
    "CONFIG_PREEMPT_VOLUNTARY",
    "CONFIG_PREEMPT_NONE",
    "CONFIG_HZ",
)


class ResultsError(RuntimeError):
    """A results file or record is malformed, or an argument is wrong."""


# ------------------------------------------------------------------ statistics


def summarize(values: Iterable[float | int]) -> dict[str, float | int | None]:
    """{n, min, median, max, mean} of the values (all None but n when there are none)."""
    vals = list(values)
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ResultsError(
                f"cannot summarize {v!r}: samples must be finite numbers; "
                f"record a failed measurement as a separate field, not as {v!r}"
            )
    if not vals:
        return {"n": 0, "min": None, "median": None, "max": None, "mean": None}
    return {
        "n": len(vals),
        "min": min(vals),
        "median": statistics.median(vals),
        "max": max(vals),
        "mean": statistics.fmean(vals),
    }


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def summarize_samples(samples: Sequence[object]) -> dict[str, dict[str, float | int | None]]:
    """Per-metric summary: every key whose values are numbers in all samples that have it.

    Plain-number samples are summarized under "value".
    """
    if not samples:
        return {}
    if all(_is_number(s) for s in samples):
        return {"value": summarize(samples)}  # type: ignore[arg-type]
    if not all(isinstance(s, dict) for s in samples):
        raise ResultsError(
            "samples must be all numbers or all JSON objects (one per repetition); "
            'wrap each measurement as {"metric": value, ...}'
        )
    keys: list[str] = []
    for s in samples:
        for k in s:  # type: ignore[union-attr]
            if k not in keys:
                keys.append(k)
    out: dict[str, dict[str, float | int | None]] = {}
    for k in keys:
        vals = [s[k] for s in samples if k in s]  # type: ignore[index,operator]
        if vals and all(_is_number(v) for v in vals):
            out[k] = summarize(vals)
    return out


# ------------------------------------------------------------------ environment


def _run(cmd: Sequence[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout + proc.stderr).strip()
    return text or None


def _first_line(text: str | None) -> str | None:
    return text.splitlines()[0].strip() if text else None


def kernel_config(release: str | None = None) -> dict[str, Any]:
    """Selected kernel config facts from /proc/config.gz or /boot/config-<release>."""
    release = release or platform.release()
    candidates = [Path("/proc/config.gz"), Path(f"/boot/config-{release}")]
    for path in candidates:
        try:
            if path.suffix == ".gz":
                with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                    text = f.read()
            else:
                text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        facts: dict[str, Any] = {"source": str(path)}
        for key in KERNEL_CONFIG_KEYS:
            m = re.search(rf"^{key}=(.*)$", text, re.M)
            facts[key] = m.group(1).strip('"') if m else "not set"
        return facts
    return {"source": None, "note": "no /proc/config.gz or /boot/config-<release> on this host"}


def cgroup_mode(mounts_text: str | None = None) -> str:
    """'v2' (unified), 'hybrid' (v1 controllers + cgroup2 at .../unified) or 'v1'."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text(encoding="utf-8")
        except OSError:
            return "unknown"
    v1 = v2 = False
    root_is_v2 = False
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        target, fstype = parts[1], parts[2]
        if fstype == "cgroup2":
            v2 = True
            root_is_v2 = root_is_v2 or target == "/sys/fs/cgroup"
        elif fstype == "cgroup":
            v1 = True
    if root_is_v2 and not v1:
        return "v2"
    if v1 and v2:
        return "hybrid"
    if v1:
        return "v1"
    return "v2" if v2 else "unknown"


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _bcc_version() -> str | None:
    try:
        import bcc  # type: ignore[import-not-found]  # from Debian's python3-bpfcc
    except Exception:  # bcc raises more than ImportError when its library is missing
        return None
    return str(getattr(bcc, "__version__", "unknown"))


def _iptables() -> dict[str, str | None]:
    text = _first_line(_run(["iptables", "-V"]))
    backend = None
    if text:
        m = re.search(r"\((\w+)\)", text)
        backend = m.group(1) if m else "legacy"
    return {"version": text, "backend": backend}


def _git(repo: Path) -> dict[str, Any]:
    rev = _run(["git", "-C", str(repo), "rev-parse", "HEAD"])
    if not rev or not re.fullmatch(r"[0-9a-f]{40}", rev):
        return {"revision": None}
    status = _run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return {"revision": rev, "dirty": bool(status)}


def tool_versions() -> dict[str, Any]:
    fortio = _first_line(_run(["fortio", "version"]))
    wrk = _first_line(_run(["wrk", "-v"]))
    return {
        "python": platform.python_version(),
        "bcc": _bcc_version(),
        "load_generator": "fortio" if fortio else ("wrk" if wrk else None),
        "fortio": fortio,
        "wrk": wrk,
        "nginx": _first_line(_run(["nginx", "-v"])),
        "bpftool": _first_line(_run(["bpftool", "version"])),
        "iptables": _iptables(),
        "nft": _first_line(_run(["nft", "--version"])),
    }


def environment() -> dict[str, Any]:
    """Facts about this host that a reader needs to compare a figure with a published one."""
    uname = platform.uname()
    return {
        "hostname": socket.gethostname(),
        "kernel": {"release": uname.release, "version": uname.version, "machine": uname.machine},
        "kernel_config": kernel_config(uname.release),
        "cpu": {"cores": os.cpu_count(), "model": _cpu_model()},
        "memory_bytes": _memory_bytes(),
        "cgroup_mode": cgroup_mode(),
        "tools": tool_versions(),
        "git": _git(published.REPO_ROOT),
        "collected_at": _now(),
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 4 random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


# ------------------------------------------------------------------ published


def published_for(
    experiment_ids: Iterable[str], source: published.Published | None = None
) -> list[dict[str, Any]]:
    """Figures of these experiments, copied from reference/published.yml."""
    data = source or published.load()
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for exp in experiment_ids:
        try:
            figs = data.by_experiment(exp)
        except KeyError as exc:
            raise ResultsError(str(exc.args[0])) from None
        for fig in figs:
            if fig.id not in seen:
                seen.add(fig.id)
                out.append(fig.to_dict(data.sources))
    return out


# ------------------------------------------------------------------ records and files


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ResultsError(
            f"{kind} {name!r} is not a usable name: use letters, digits and . _ - : = , + "
            f"(e.g. suite_cpu, 2_1.threads=100)"
        )


def make_record(
    suite: str,
    scenario: str,
    params: Mapping[str, Any] | None = None,
    samples: Sequence[object] = (),
    experiments: Sequence[str] = (),
    env: Mapping[str, Any] | None = None,
    expected_samples: int | None = None,
    lab: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete record: summary computed, environment and published figures filled in.

    ``lab`` (backend, profile, ...) is kept in the environment under "lab".
    """
    _check_name("suite", suite)
    _check_name("scenario", scenario)
    env_dict = dict(env) if env is not None else environment()
    if lab:
        env_dict["lab"] = dict(lab)
    record: dict[str, Any] = {
        "suite": suite,
        "scenario": scenario,
        "params": dict(params or {}),
        "environment": env_dict,
        "samples": list(samples),
        "summary": summarize_samples(list(samples)),
        "published": published_for(experiments),
        "experiments": list(experiments),
        "recorded_at": _now(),
    }
    if expected_samples is not None:
        if expected_samples < 1:
            raise ResultsError(f"expected_samples must be >= 1, not {expected_samples}")
        record["expected_samples"] = expected_samples
    return record


def validate_record(record: object, suite: str, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ResultsError(f"{where}: a record must be a JSON object")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ResultsError(
            f"{where}: record lacks {', '.join(missing)}; build records with "
            f"kmesh_lab.results.make_record or the `record` CLI"
        )
    if record["suite"] != suite:
        raise ResultsError(f"{where}: record of suite {record['suite']!r} in the {suite!r} file")
    _check_name("scenario", record["scenario"])
    for key, typ in (("params", dict), ("environment", dict), ("samples", list)):
        if not isinstance(record[key], typ):
            raise ResultsError(f"{where}: field {key!r} must be a JSON {typ.__name__}")
    if not isinstance(record["summary"], dict) or not isinstance(record["published"], list):
        raise ResultsError(f"{where}: summary must be an object and published a list")
    return record


def suite_path(run_dir: Path | str, suite: str) -> Path:
    _check_name("suite", suite)
    return Path(run_dir) / f"{suite}.json"


def read_suite(run_dir: Path | str, suite: str) -> dict[str, Any]:
    """The whole suite document (an empty one if the suite has not written yet)."""
    path = suite_path(run_dir, suite)
    empty = {
        "schema_version": SCHEMA_VERSION,
        "suite": suite,
        "run_id": Path(run_dir).name,
        "records": [],
    }
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return empty
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); it was not written by "
            f"this module (writes are atomic). Move it aside and rerun the suite."
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise ResultsError(f"{path}: expected an object with a 'records' list; move it aside")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: schema_version {doc.get('schema_version')!r}, this code reads "
            f"{SCHEMA_VERSION}; use a results directory from this version"
        )
    for i, rec in enumerate(doc["records"]):
        validate_record(rec, suite, f"{path} records[{i}]")
    return doc


def read_records(run_dir: Path | str, suite: str) -> list[dict[str, Any]]:
    return list(read_suite(run_dir, suite)["records"])


@contextlib.contextmanager
def _locked(run_dir: Path, suite: str) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / f".{suite}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_write(path: Path, doc: Mapping[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; results are for everyone who reads the run.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _save(run_dir: Path, suite: str, doc: dict[str, Any]) -> Path:
    doc["updated"] = _now()
    path = suite_path(run_dir, suite)
    _atomic_write(path, doc)
    return path


def write_records(run_dir: Path | str, suite: str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Merge records into the suite file: a record replaces the one of the same scenario."""
    run_path = Path(run_dir)
    new = [validate_record(dict(r), suite, f"record for {suite}") for r in records]
    with _locked(run_path, suite):
        doc = read_suite(run_path, suite)
        index = {rec["scenario"]: i for i, rec in enumerate(doc["records"])}
        for rec in new:
            if rec["scenario"] in index:
                doc["records"][index[rec["scenario"]]] = rec
            else:
                index[rec["scenario"]] = len(doc["records"])
                doc["records"].append(rec)
        return _save(run_path, suite, doc)


def append_samples(
    run_dir: Path | str,
    suite: str,
    scenario: str,
    samples: Sequence[object],
    params: Mapping[str, Any] | None = None,
    experiments: Sequence[str] = (),
    expected_samples: int | None = None,
    lab: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Add samples (e.g. one repetition) to a scenario, creating it if needed."""
    run_path = Path(run_dir)
    with _locked(run_path, suite):
        doc = read_suite(run_path, suite)
        existing = next((r for r in doc["records"] if r["scenario"] == scenario), None)
        if existing is None:
            record = make_record(
                suite,
                scenario,
                params,
                samples,
                experiments,
                expected_samples=expected_samples,
                lab=lab,
            )
            doc["records"].append(record)
        else:
            if params is not None and dict(params) != existing["params"]:
                raise ResultsError(
                    f"scenario {scenario!r} of {suite} was recorded with params "
                    f"{existing['params']} but now {dict(params)}; give the scenario a "
                    f"different name, or pass --replace to start it over"
                )
            existing["samples"].extend(samples)
            existing["summary"] = summarize_samples(existing["samples"])
            if experiments and list(experiments) != existing.get("experiments"):
                existing["experiments"] = list(experiments)
                existing["published"] = published_for(experiments)
            if expected_samples is not None:
                existing["expected_samples"] = expected_samples
            existing["recorded_at"] = _now()
            record = existing
        _save(run_path, suite, doc)
        return record


def is_complete(record: Mapping[str, Any]) -> bool:
    expected = record.get("expected_samples")
    return expected is None or len(record["samples"]) >= expected


def done_scenarios(run_dir: Path | str, suite: str) -> set[str]:
    """Scenarios already complete in this run (what a resumed suite may skip)."""
    return {r["scenario"] for r in read_records(run_dir, suite) if is_complete(r)}


# ------------------------------------------------------------------ CLI


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{what} is not valid JSON ({exc.msg}): {text!r}") from exc


def _samples_from_file(name: str) -> list[object]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsError(f"--sample-file {name}: cannot read it ({exc.strerror})") from exc
    data = _json_arg(text, f"--sample-file {name}")
    return data if isinstance(data, list) else [data]


def _cmd_record(args: argparse.Namespace) -> int:
    params = _json_arg(args.params, "--params") if args.params is not None else None
    if params is not None and not isinstance(params, dict):
        raise ResultsError(f"--params must be a JSON object, not {args.params!r}")
    lab = _json_arg(args.lab, "--lab") if args.lab is not None else None
    if lab is not None and not isinstance(lab, dict):
        raise ResultsError(f"--lab must be a JSON object, not {args.lab!r}")
    samples: list[object] = [_json_arg(s, "--sample") for s in args.sample]
    for name in args.sample_file:
        samples.extend(_samples_from_file(name))
    for name in args.load_json:
        try:
            samples.append(loadgen.parse(name).to_sample())
        except loadgen.LoadResultError as exc:
            raise ResultsError(str(exc)) from exc
    if not samples:
        raise ResultsError("record needs at least one --sample, --sample-file or --load-json")
    summarize_samples(samples)  # reject bad samples before touching the file
    if args.replace:
        record = make_record(
            args.suite,
            args.scenario,
            params,
            samples,
            args.experiment,
            expected_samples=args.repetitions,
            lab=lab,
        )
        write_records(args.run_dir, args.suite, [record])
    else:
        record = append_samples(
            args.run_dir,
            args.suite,
            args.scenario,
            samples,
            params,
            args.experiment,
            args.repetitions,
            lab,
        )
    expected = record.get("expected_samples")
    progress = f"{len(record['samples'])}/{expected}" if expected else str(len(record["samples"]))
    print(
        f"recorded {args.suite}/{args.scenario}: {progress} samples -> "
        f"{suite_path(args.run_dir, args.suite)}",
        file=sys.stderr,
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    for rec in read_records(args.run_dir, args.suite):
        state = "done" if is_complete(rec) else "partial"
        print(f"{rec['scenario']}\t{state}\tn={len(rec['samples'])}\t{json.dumps(rec['params'])}")
        for metric, s in rec["summary"].items():
            print(f"  {metric}: median {s['median']} (min {s['min']}, max {s['max']}, n {s['n']})")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kmesh_lab.results",
        description="Write and query results/<run_id>/<suite>.json.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("new-run-id", help="print a fresh run id")
    sub.add_parser("environment", help="print environment() as JSON")
    pub = sub.add_parser("published", help="print the published figures of experiments")
    pub.add_argument("--experiment", action="append", required=True)

    def suite_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--run-dir", required=True, type=Path, help="results/<run_id>")
        p.add_argument("--suite", required=True)

    rec = sub.add_parser("record", help="append samples to a scenario (creating it)")
    suite_args(rec)
    rec.add_argument("--scenario", required=True)
    rec.add_argument("--params", help="JSON object of the scenario's parameters")
    rec.add_argument("--lab", help='JSON object kept as environment.lab, e.g. {"profile": "quick"}')
    rec.add_argument("--experiment", action="append", default=[], help="published experiment id")
    rec.add_argument("--repetitions", type=int, help="samples planned; done when reached")
    rec.add_argument("--replace", action="store_true", help="start the scenario over")
    rec.add_argument("--sample", action="append", default=[], help="one sample as JSON")
    rec.add_argument("--sample-file", action="append", default=[], help="JSON sample(s) file")
    rec.add_argument("--load-json", action="append", default=[], help="tools/fortio.sh JSON")
    for name in ("done", "show"):
        suite_args(sub.add_parser(name))
    is_done = sub.add_parser("is-done", help="exit 0 if the scenario is complete, else 1")
    suite_args(is_done)
    is_done.add_argument("--scenario", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "new-run-id":
            print(new_run_id())
        elif args.command == "environment":
            print(json.dumps(environment(), indent=2))
        elif args.command == "published":
            print(json.dumps(published_for(args.experiment), indent=2, ensure_ascii=False))
        elif args.command == "record":
            return _cmd_record(args)
        elif args.command == "done":
            for name in sorted(done_scenarios(args.run_dir, args.suite)):
                print(name)
        elif args.command == "is-done":
            return 0 if args.scenario in done_scenarios(args.run_dir, args.suite) else 1
        elif args.command == "show":
            return _cmd_show(args)
    except (ResultsError, published.PublishedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
