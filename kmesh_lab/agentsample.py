"""One measurement of the running agent: its BPF memory (true and gadget view), its state
counters, its RSS and CPU. What the memory and scaling suites record at every point.

    bpf_memory(top_report)  -> flat dict from `kmesh-node top --json` (pure; unit-tested)
    parse_metrics(text)     -> {name: value} of the label-less samples of Prometheus text
    measure(agent)          -> one sample (runs `kmesh-node top`, scrapes metrics, reads /proc)

True BPF memory = the memlock of every map reachable from the agent's pins, inner maps of
*_OF_MAPS maps included, plus its programs. The gadget view is what Inspektor Gadget's
`top ebpf` MAPMEMORY shows: per program, the memlock of the maps it references. An outer
map counts only its slots, so inner maps -- where the entries live -- are invisible to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmesh_lab import procstat

TOP_TIMEOUT_S = 120.0
# sample key -> the agent's metric (kmesh_node/metrics.py)
COUNTERS = {
    "services": "kmesh_node_services",
    "endpoints": "kmesh_node_endpoints",
    "frontends": "kmesh_node_frontends",
    "capacity": "kmesh_node_capacity",
    "resizes": "kmesh_node_map_resizes_total",
}


class AgentError(RuntimeError):
    """The agent cannot be measured; the message names the fix."""


@dataclass(frozen=True)
class Agent:
    """Where the agent under test is: its pins, metrics address and PID file."""

    bpffs: str
    metrics: str  # HOST:PORT
    pid_file: Path

    def pid(self) -> int:
        return procstat.pid_from_file(self.pid_file)


def kmesh_node_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kmesh_node", *args]


def bpf_memory(report: dict[str, Any]) -> dict[str, Any]:
    """Flatten a `kmesh-node top --json` report into the figures the suites record.

    `bpf_*` is the truth (every map incl. inner maps, plus programs); `gadget_*` is the
    per-program MAPMEMORY view: `gadget_sum_bytes` adds each program's maps (a shared map
    counts once per program, as in the gadget's table), `gadget_distinct_bytes` counts each
    referenced map once; `gadget_invisible_bytes` is truth (maps) minus what any program
    references. `maps_by_name` groups maps like seed 002's `bpftool map -j | jq group_by`.
    """
    try:
        totals, gadget, maps = report["totals"], report["gadget_view"], report["maps"]
    except (KeyError, TypeError) as exc:
        raise AgentError(
            f"not a `kmesh-node top --json` report (missing {exc}); check kmesh-node's version"
        ) from None
    by_name: dict[str, dict[str, int]] = {}
    for m in maps:
        name = m["name"] if m.get("inner_of") is None else f"{_outer_name(maps, m)}.inner"
        g = by_name.setdefault(name, {"maps": 0, "memlock_bytes": 0, "entries": 0})
        g["maps"] += 1
        g["memlock_bytes"] += int(m["memlock_bytes"])
        g["entries"] += int(m.get("entries") or 0)
    return {
        "bpf_bytes": int(totals["bytes"]),
        "bpf_maps_bytes": int(totals["maps_bytes"]),
        "bpf_inner_maps_bytes": int(totals["inner_maps_bytes"]),
        "bpf_programs_bytes": int(totals["programs_bytes"]),
        "bpf_maps": int(totals["maps"]),
        "bpf_inner_maps": int(totals["inner_maps"]),
        "bpf_entries": int(totals["entries"]),
        "gadget_sum_bytes": int(gadget["sum_bytes"]),
        "gadget_distinct_bytes": int(gadget["distinct_referenced_bytes"]),
        "gadget_invisible_bytes": int(gadget["invisible_bytes"]),
        "gadget_programs": [
            {"name": p["name"], "map_count": p["map_count"], "map_bytes": p["map_bytes"]}
            for p in gadget["programs"]
        ],
        "maps_by_name": by_name,
        # eBPF run-time over top's sampling window (the hook ran: traffic went through it)
        "bpf_window_s": float(report.get("interval", 0.0)),
        "bpf_runs": int(totals.get("delta_run_cnt", 0)),
        "bpf_cpu_pct_core": float(totals.get("cpu_pct_core", 0.0)),
        "bpf_cpu_pct_node": float(totals.get("cpu_pct_node", 0.0)),
    }


def _outer_name(maps: list[dict[str, Any]], inner: dict[str, Any]) -> str:
    outer = next((m for m in maps if m["id"] == inner["inner_of"]), None)
    return outer["name"] if outer else f"map#{inner['inner_of']}"


def parse_metrics(text: str) -> dict[str, float]:
    """Label-less samples of Prometheus text exposition: {"kmesh_node_services": 1.0, ...}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def scrape(metrics: str, timeout: float = 30.0) -> dict[str, float]:
    url = f"http://{metrics}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return parse_metrics(resp.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as exc:
        raise AgentError(
            f"cannot scrape the agent's metrics at {url} ({exc}); is the agent running with "
            f"--metrics {metrics}? (ansible-playbook playbooks/agent.yml starts it)"
        ) from exc


def services(agent: Agent) -> int:
    """Services the agent holds, from its metrics (kmesh_node_services)."""
    values = scrape(agent.metrics)
    if "kmesh_node_services" not in values:
        raise AgentError(f"the agent's metrics at {agent.metrics} lack kmesh_node_services")
    return int(values["kmesh_node_services"])


def wait_services(agent: Agent, expected: int, timeout: float, poll: float = 0.05) -> float:
    """Wait until the agent holds `expected` services; return the seconds waited.

    A scrape that fails while the agent is busy is retried until `timeout`.
    """
    started = time.monotonic()
    seen: int | str = "no answer"
    while True:
        try:
            seen = services(agent)
        except AgentError as exc:
            seen = f"no answer ({exc})"
        if seen == expected:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AgentError(
                f"the agent holds {seen} services, not {expected}, after {timeout:.0f} s; "
                f"look at its log (logs/kmesh-node.log in the lab's state dir)"
            )
        time.sleep(poll)


def top(agent: Agent, interval: float = 0.1) -> dict[str, Any]:
    argv = kmesh_node_argv("top", "--json", "--count", "1", "--interval", str(interval))
    argv += ["--bpffs", agent.bpffs]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AgentError(f"`kmesh-node top` took over {TOP_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise AgentError(
            f"`{' '.join(argv[2:])}` failed ({proc.returncode}): {proc.stderr.strip()[-400:]}"
        )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AgentError(f"`kmesh-node top --json` printed no JSON: {exc.msg}") from exc


def measure(agent: Agent, interval: float = 0.1) -> dict[str, Any]:
    """BPF memory (true + gadget view), the agent's counters, RSS; all read now (eBPF
    run counts over `interval` seconds)."""
    pid = agent.pid()
    memory = bpf_memory(top(agent, interval))
    counters = scrape(agent.metrics)
    proc = procstat.read(pid)
    sample: dict[str, Any] = {
        key: int(counters[metric])
        for key, metric in COUNTERS.items()
        if metric in counters  # an agent without a counter leaves it out, never -1
    }
    sample["agent_rss_bytes"] = proc.rss_bytes
    sample.update(memory)
    return sample
