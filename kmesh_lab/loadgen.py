"""One parser for the load wrapper's output, for every suite.

``tools/fortio.sh load ... -json FILE`` writes fortio-format JSON whether fortio or the wrk
fallback ran (see the header of tools/fortio.sh). ``parse(path)`` reads either into a
``LoadResult`` and rejects malformed files with a message that says what is wrong and how
to get a good file. Latencies are kept in seconds, as fortio writes them.

CLI (for Ansible roles)::

    python -m kmesh_lab.loadgen sample FILE     # one flat JSON sample: qps, p50_ms, ...
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOCKET_ERROR_CODE = -1  # fortio's (and our wrk script's) RetCodes key for socket errors


class LoadResultError(RuntimeError):
    """A load JSON file is missing, unreadable or not fortio-format."""


@dataclass(frozen=True)
class LoadResult:
    runner: str  # "fortio" or "wrk"
    qps: float  # ActualQPS
    requested_qps: float | None  # None = as fast as possible ("max" / 0)
    duration_s: float
    connections: int | None  # fortio's NumThreads (= -c)
    count: int  # DurationHistogram.Count
    avg: float  # seconds
    min: float
    max: float
    stddev: float | None
    percentiles: dict[float, float]  # {50.0: seconds, 99.9: seconds, ...}
    ret_codes: dict[int, int]  # {200: n, -1: socket errors}
    socket_count: int | None
    keepalive: bool | None
    tcp_active_opens: int | None  # wrk fallback only: kernel counter over the run
    url: str = ""
    start_time: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        """Responses with a 2xx or 3xx status."""
        return sum(n for code, n in self.ret_codes.items() if 200 <= code < 400)

    @property
    def errors(self) -> int:
        """Socket errors plus responses that are not 2xx/3xx."""
        return sum(n for code, n in self.ret_codes.items() if not 200 <= code < 400)

    def percentile(self, pct: float) -> float:
        """Latency at a percentile, in seconds."""
        try:
            return self.percentiles[float(pct)]
        except KeyError:
            raise KeyError(
                f"percentile {pct} was not recorded (have {sorted(self.percentiles)}); "
                f"pass it with tools/fortio.sh load -p"
            ) from None

    def to_sample(self) -> dict[str, Any]:
        """A flat, JSON-ready sample for a results record (latencies in ms)."""
        sample: dict[str, Any] = {
            "runner": self.runner,
            "qps": self.qps,
            "requested_qps": self.requested_qps,
            "duration_s": self.duration_s,
            "connections": self.connections,
            "count": self.count,
            "ok": self.ok,
            "errors": self.errors,
            "avg_ms": self.avg * 1e3,
            "min_ms": self.min * 1e3,
            "max_ms": self.max * 1e3,
            "socket_count": self.socket_count,
            "keepalive": self.keepalive,
            "ret_codes": {str(k): v for k, v in sorted(self.ret_codes.items())},
        }
        for pct, val in sorted(self.percentiles.items()):
            name = f"{pct:g}".replace(".", "_")
            sample[f"p{name}_ms"] = val * 1e3
        if self.tcp_active_opens is not None:
            sample["tcp_active_opens"] = self.tcp_active_opens
        return sample


def _bad(origin: str, what: str) -> LoadResultError:
    return LoadResultError(
        f"{origin}: {what}. It is not a fortio-format load result; produce one with "
        f"`tools/fortio.sh load -json FILE URL` and check the wrapper's stderr for its error."
    )


def _number(data: Mapping[str, Any], key: str, origin: str, where: str = "") -> float:
    val = data.get(key)
    if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val):
        raise _bad(origin, f"field {where}{key} is {val!r}, not a number")
    if val < 0:
        raise _bad(origin, f"field {where}{key} is negative ({val})")
    return float(val)


def _requested_qps(val: object, origin: str) -> float | None:
    if val is None or val == "max":
        return None
    try:
        qps = float(val)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad(origin, f"field RequestedQPS is {val!r}, not a number or 'max'") from None
    return None if qps <= 0 else qps


def parse_data(data: object, origin: str = "<data>") -> LoadResult:
    """Validate an already-decoded JSON document."""
    if not isinstance(data, dict):
        raise _bad(origin, "the top level is not a JSON object")
    qps = _number(data, "ActualQPS", origin)
    duration_ns = _number(data, "ActualDuration", origin)
    hist = data.get("DurationHistogram")
    if not isinstance(hist, dict):
        raise _bad(origin, "field DurationHistogram is missing or not an object")
    count_f = _number(hist, "Count", origin, "DurationHistogram.")
    if not count_f.is_integer():
        raise _bad(origin, f"field DurationHistogram.Count is {count_f}, not a whole number")
    count = int(count_f)
    if count > 0:
        avg = _number(hist, "Avg", origin, "DurationHistogram.")
        lo = _number(hist, "Min", origin, "DurationHistogram.")
        hi = _number(hist, "Max", origin, "DurationHistogram.")
        if not lo <= avg <= hi:
            raise _bad(origin, f"DurationHistogram Min {lo} <= Avg {avg} <= Max {hi} does not hold")
    else:
        avg = lo = hi = 0.0
    stddev = hist.get("StdDev")
    stddev = float(stddev) if isinstance(stddev, int | float) else None
    pcts_raw = hist.get("Percentiles") or []
    if not isinstance(pcts_raw, list):
        raise _bad(origin, "field DurationHistogram.Percentiles is not a list")
    percentiles: dict[float, float] = {}
    for i, entry in enumerate(pcts_raw):
        if not isinstance(entry, dict):
            raise _bad(origin, f"DurationHistogram.Percentiles[{i}] is not an object")
        where = f"DurationHistogram.Percentiles[{i}]."
        percentiles[_number(entry, "Percentile", origin, where)] = _number(
            entry, "Value", origin, where
        )
    codes_raw = data.get("RetCodes", {})
    if not isinstance(codes_raw, dict):
        raise _bad(origin, "field RetCodes is not an object")
    ret_codes: dict[int, int] = {}
    for key, n in codes_raw.items():
        try:
            code = int(key)
        except ValueError:
            raise _bad(origin, f"RetCodes key {key!r} is not an HTTP status code") from None
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _bad(origin, f"RetCodes[{key!r}] is {n!r}, not a count")
        ret_codes[code] = n
    sockets = data.get("SocketCount")
    if sockets is not None and (isinstance(sockets, bool) or not isinstance(sockets, int)):
        raise _bad(origin, f"field SocketCount is {sockets!r}, not a whole number")
    threads = data.get("NumThreads")
    opens = data.get("TcpActiveOpens")
    keepalive = data.get("KeepAlive")
    runner = data.get("Runner", "fortio")
    if runner not in ("fortio", "wrk"):
        raise _bad(origin, f"field Runner is {runner!r}, expected 'fortio' or 'wrk'")
    known = {
        "ActualQPS",
        "ActualDuration",
        "DurationHistogram",
        "RetCodes",
        "SocketCount",
        "NumThreads",
        "TcpActiveOpens",
        "KeepAlive",
        "Runner",
        "RequestedQPS",
        "URL",
        "StartTime",
    }
    return LoadResult(
        runner=runner,
        qps=qps,
        requested_qps=_requested_qps(data.get("RequestedQPS"), origin),
        duration_s=duration_ns / 1e9,
        connections=threads if isinstance(threads, int) else None,
        count=count,
        avg=avg,
        min=lo,
        max=hi,
        stddev=stddev,
        percentiles=percentiles,
        ret_codes=ret_codes,
        socket_count=sockets,
        keepalive=keepalive if isinstance(keepalive, bool) else None,
        tcp_active_opens=opens if isinstance(opens, int) else None,
        url=str(data.get("URL", "")),
        start_time=str(data.get("StartTime", "")),
        extra={k: v for k, v in data.items() if k not in known},
    )


def parse(path: Path | str) -> LoadResult:
    """Read one fortio-format JSON file written by tools/fortio.sh (or fortio itself)."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadResultError(
            f"{target}: cannot read the load result ({exc.strerror}); did tools/fortio.sh "
            f"run with -json {target} and succeed?"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(str(target), f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    return parse_data(data, str(target))


def _main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "sample":
        print("usage: python -m kmesh_lab.loadgen sample FILE", file=sys.stderr)
        return 2
    try:
        print(json.dumps(parse(args[1]).to_sample(), indent=2))
    except LoadResultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
