"""istio-iptables' traffic capture for one pod, rendered; and how to undo it. Pure: no I/O.

The rules are the ones istio-iptables (istio tools/istio-iptables/pkg/capture) writes in
REDIRECT mode, in its order, for the sidecar injector's default arguments
(`-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020`):

- ISTIO_OUTPUT (from OUTPUT) sends what the app opens to ISTIO_REDIRECT -> :15001, except
  the proxy's own traffic (`-m owner --uid-owner/--gid-owner 1337`), traffic to
  127.0.0.1, and the inbound hand-over from 127.0.0.6 to the app on `lo`; the proxy
  calling its own pod over `lo` goes to ISTIO_IN_REDIRECT.
- ISTIO_INBOUND (from PREROUTING) sends every TCP connection to the pod, but the excluded
  ports and the HBONE tunnel port 15008, to ISTIO_IN_REDIRECT -> :15006.

tests/unit/test_sidecar_capture.py compares `istio_commands` with istio's own golden files.
Deliberate differences from istio-iptables:
- the rules go in as ONE `iptables-restore --noflush` input (`restore_text`), chains
  declared as `:CHAIN - [0:0]` instead of `-N CHAIN` commands; the rule lines are the same;
- IPv4 only (the lab is IPv4): no ip6tables rules are written; IPv6 routes still render;
- no DNS capture, TPROXY mode, virtual-interface or owner-group include/exclude options:
  only the outbound CIDR include list and inbound port exclude list are rendered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

CHAINS = ("ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT")
BUILTIN = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
# Envoy's prometheus, health and agent ports: never captured inbound (injector's -d).
DEFAULT_INBOUND_EXCLUDE = (15090, 15021, 15020)
LOCALHOST = "127.0.0.1/32"
# The source Envoy binds when it hands an inbound connection to the app (istio >= 1.10).
INBOUND_SOURCE = "127.0.0.6"


@dataclass(frozen=True)
class Capture:
    """istio-iptables' arguments that the lab uses (names as in its config.Config)."""

    proxy_port: int = 15001  # -p
    inbound_capture_port: int = 15006  # -z
    inbound_tunnel_port: int = 15008  # HBONE, always returned early
    proxy_uid: int = 1337  # -u
    proxy_gid: int = 1337  # -g
    inbound_ports_include: str = "*"  # -b: "*" (every port) or "" (no inbound capture)
    inbound_ports_exclude: tuple[int, ...] = DEFAULT_INBOUND_EXCLUDE  # -d
    outbound_ip_ranges_include: tuple[str, ...] = field(default=("*",))  # -i: "*" or CIDRs

    def __post_init__(self) -> None:
        ports = {
            "proxy_port": self.proxy_port,
            "inbound_capture_port": self.inbound_capture_port,
            "inbound_tunnel_port": self.inbound_tunnel_port,
        }
        checked = [*ports.items(), *(("excluded port", p) for p in self.inbound_ports_exclude)]
        for name, port in checked:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"{name} {port!r} is not a TCP port: use 1-65535")
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"the proxy's ports must differ: {ports}")
        for name, ident in (("proxy_uid", self.proxy_uid), ("proxy_gid", self.proxy_gid)):
            if isinstance(ident, bool) or not isinstance(ident, int) or ident < 1:
                raise ValueError(f"{name} {ident!r}: use the proxy user's numeric id (>= 1)")
        if self.inbound_ports_include not in ("*", ""):
            raise ValueError(
                f"inbound_ports_include {self.inbound_ports_include!r}: use '*' (capture every "
                "inbound port) or '' (none); port lists are not rendered"
            )
        for cidr in self.outbound_ip_ranges_include:
            if cidr == "*":
                continue
            try:
                net = ipaddress.ip_network(cidr)
            except ValueError:
                raise ValueError(
                    f"outbound range {cidr!r} is not '*' or a CIDR such as 10.96.0.0/12"
                ) from None
            if net.version != 4:
                raise ValueError(f"outbound range {cidr!r}: only IPv4 ranges are captured")


def istio_commands(cfg: Capture) -> list[str]:
    """The nat table's `-N`/`-A` lines in istio-iptables' order (its golden files' form)."""
    lines = [f"-N {c}" for c in CHAINS]
    lines += [
        f"-A ISTIO_INBOUND -p tcp --dport {cfg.inbound_tunnel_port} -j RETURN",
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {cfg.proxy_port}",
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {cfg.inbound_capture_port}",
    ]
    if cfg.inbound_ports_include == "*":
        lines.append("-A PREROUTING -p tcp -j ISTIO_INBOUND")
        if cfg.inbound_ports_exclude:
            ports = ",".join(str(p) for p in cfg.inbound_ports_exclude)
            lines.append(f"-A ISTIO_INBOUND -p tcp -m multiport --dports {ports} -j RETURN")
        lines.append("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
    lines += [
        "-A OUTPUT -j ISTIO_OUTPUT",
        f"-A ISTIO_OUTPUT -o lo -s {INBOUND_SOURCE}/32 -j RETURN",
    ]
    for flag, ident in (("--uid-owner", cfg.proxy_uid), ("--gid-owner", cfg.proxy_gid)):
        lines += [
            f"-A ISTIO_OUTPUT -o lo ! -d {LOCALHOST} -p tcp ! --dport {cfg.inbound_tunnel_port} "
            f"-m owner {flag} {ident} -j ISTIO_IN_REDIRECT",
            f"-A ISTIO_OUTPUT -o lo -m owner ! {flag} {ident} -j RETURN",
            f"-A ISTIO_OUTPUT -m owner {flag} {ident} -j RETURN",
        ]
    lines.append(f"-A ISTIO_OUTPUT -d {LOCALHOST} -j RETURN")
    for cidr in cfg.outbound_ip_ranges_include:
        if cidr == "*":
            lines.append("-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
        else:
            lines.append(f"-A ISTIO_OUTPUT -d {ipaddress.ip_network(cidr)} -j ISTIO_REDIRECT")
    return lines


def restore_text(cfg: Capture) -> str:
    """The rules as one `iptables-restore --noflush` input for the nat table."""
    body = [
        f":{line[3:]} - [0:0]" if line.startswith("-N ") else line for line in istio_commands(cfg)
    ]
    return "\n".join(["*nat", *body, "COMMIT", ""])


def rule_count(cfg: Capture) -> int:
    return sum(line.startswith("-A ") for line in istio_commands(cfg))


def _nat_lines(save_text: str) -> list[str]:
    table, out = "", []
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat":
            out.append(line)
    return out


def saved_rules(save_text: str) -> list[str]:
    """`-A` lines of `iptables-save` that belong to the capture (ISTIO_* chains and jumps)."""
    return [
        line
        for line in _nat_lines(save_text)
        if line.startswith("-A ISTIO_") or (line.startswith("-A ") and " -j ISTIO_" in line)
    ]


def saved_chains(save_text: str) -> list[str]:
    return [line[1:].split()[0] for line in _nat_lines(save_text) if line.startswith(":ISTIO_")]


def removal_input(save_text: str) -> str:
    """A `--noflush` restore input that deletes the capture found in `save_text` (jumps from
    built-in chains first, then every ISTIO_* chain); "" when there is nothing to remove."""
    jumps = ["-D " + line[3:] for line in saved_rules(save_text) if line.split()[1] in BUILTIN]
    chains = saved_chains(save_text)
    if not jumps and not chains:
        return ""
    body: Sequence[str] = [*jumps, *(f"-F {c}" for c in chains), *(f"-X {c}" for c in chains)]
    return "\n".join(["*nat", *body, "COMMIT", ""])
