"""HAProxy as the sidecar: its config and routes map rendered from templates. Pure: no I/O.

Debian 12 packages no Envoy; HAProxy 2.6 plays its part. What makes it a sidecar:
- the outbound listener recovers the original destination of a REDIRECTed connection
  (`dst`/`dst_port`, SO_ORIGINAL_DST on Linux) and looks `dst_port@dst` up in a map
  (an ebtree, O(log n) like Envoy's filter-chain match, not one ACL per service) to pick
  the service's backend; unknown destinations go to PassthroughCluster, a `server
  0.0.0.0:0` that connects to the original destination, as Envoy's does;
- HTTP service ports (Istio's protocol selection, kmesh_lab.sidecar.routes) use `mode
  http` with keep-alive upstream connections reused across requests (`http-reuse safe`,
  HAProxy's default), like Envoy's connection pools; other ports relay TCP;
- the inbound listener hands every captured connection to the app at its original
  address from 127.0.0.6, like Envoy's InboundPassthroughCluster;
- balancing is `leastconn`, HAProxy's nearest to Envoy's default LEAST_REQUEST.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import jinja2

from kmesh_lab.sidecar.capture import INBOUND_SOURCE
from kmesh_lab.sidecar.routes import Route

TEMPLATES = Path(__file__).with_name("templates")
PROXY_NAME = "HAProxy"
BALANCE = ("leastconn", "roundrobin", "random")
LOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_TIMEOUT = re.compile(r"^[0-9]+(us|ms|s|m|h|d)?$")
# `haproxy -v`: "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
_VERSION = re.compile(r"^HA-?Proxy version (\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Settings:
    """The proxy's knobs (the role's peer_sidecar_* variables)."""

    outbound_port: int = 15001
    inbound_port: int = 15006
    stats_port: int = 15090
    threads: int = 2  # Istio's default proxy concurrency
    maxconn: int = 8192
    balance: str = "leastconn"
    log_level: str = "notice"  # info logs one line per connection
    timeout_connect: str = "10s"
    timeout_idle: str = "300s"

    def __post_init__(self) -> None:
        ports = {
            "outbound_port": self.outbound_port,
            "inbound_port": self.inbound_port,
            "stats_port": self.stats_port,
        }
        for name, value in ports.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                raise ValueError(f"{name} {value!r} is not a TCP port: use 1-65535")
        if len(set(ports.values())) != 3:
            raise ValueError(f"the proxy's listeners need three different ports, got {ports}")
        for name, value in (("threads", self.threads), ("maxconn", self.maxconn)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} {value!r} must be a whole number >= 1")
        if self.balance not in BALANCE:
            raise ValueError(f"balance {self.balance!r}: use one of {', '.join(BALANCE)}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level {self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        for name, value in (
            ("timeout_connect", self.timeout_connect),
            ("timeout_idle", self.timeout_idle),
        ):
            if not _TIMEOUT.match(str(value)):
                raise ValueError(
                    f"{name} {value!r} is not an HAProxy time: a number with an optional unit "
                    "us, ms, s, m, h or d (e.g. 10s)"
                )


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # HAProxy config text, not HTML
    )


def inbound_http_ports(routes: Iterable[Route]) -> list[int]:
    """Target ports the inbound listener treats as HTTP: those of the HTTP service ports
    (Envoy's inbound listener has one HTTP filter chain per such port)."""
    return sorted({p for r in routes if r.mode == "http" for _, p in r.endpoints})


def render_config(
    pod: str, routes: list[Route], settings: Settings, stats_socket: Path, routes_map: Path
) -> str:
    """One pod's haproxy.cfg. Routes are deduplicated by backend (one per ClusterIP:port)."""
    seen: dict[str, Route] = {}
    for r in routes:
        if seen.setdefault(r.backend, r) != r:
            raise ValueError(
                f"two routes render to backend {r.backend!r} ({seen[r.backend].address} and "
                f"{r.address}): give each service port one ClusterIP per family"
            )
    return (
        _env()
        .get_template("haproxy.cfg.j2")
        .render(
            pod=pod,
            routes=sorted(seen.values(), key=lambda r: r.backend),
            stats_socket=str(stats_socket),
            routes_map=str(routes_map),
            inbound_http_ports=inbound_http_ports(routes),
            inbound_source=INBOUND_SOURCE,
            **asdict(settings),
        )
    )


def render_map(routes: Iterable[Route]) -> str:
    """The outbound routes map: `dst_port@dst backend`, one line per ClusterIP:port."""
    return (
        _env().get_template("routes.map.j2").render(routes=sorted(routes, key=lambda r: r.map_key))
    )


def parse_version(text: str) -> str:
    """The exact version from `haproxy -v` output."""
    found = _VERSION.search(text)
    if not found:
        raise ValueError(f"`haproxy -v` printed no 'HAProxy version X' line: {text[:200]!r}")
    return found.group(1)


def parse_stat(csv: str) -> dict[str, dict[str, dict[str, int]]]:
    """`show stat` CSV -> {proxy: {FRONTEND|BACKEND|server: {stot, scur, bin, bout, hrsp_5xx}}}."""
    lines = csv.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"not `show stat` output: {csv[:200]!r}")
    header = lines[0][2:].split(",")
    wanted = ("stot", "scur", "bin", "bout", "hrsp_5xx")
    out: dict[str, dict[str, dict[str, int]]] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        out.setdefault(row["pxname"], {})[row["svname"]] = {
            k: int(row[k]) if row.get(k, "").isdigit() else 0 for k in wanted
        }
    return out
