"""The sidecar's outbound routes: one per ClusterIP:port, from the lab's manifests.

Services come from the same Service/EndpointSlice manifests the agent watches, through the
agent's own translation (kmesh_node.translate), as kmesh_lab.kube_proxy_apply reads them,
so every data plane serves the same services. Unlike kube-proxy's IPv4 proxier, a sidecar
serves both families, so IPv6 frontends are kept.

A route's protocol is chosen the way Istio chooses it (protocol selection): the port's
`appProtocol`, else the prefix of its name (`http`, `http-web`, `http2`...), decides
whether the sidecar speaks HTTP to the upstream (HAProxy `mode http`, Envoy's HTTP
connection manager) or relays bytes (`mode tcp`, Envoy's tcp_proxy). UDP ports are not
proxied (Istio's sidecar captures only TCP, DNS aside): they are listed in `skipped`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmesh_lab import manifests
from kmesh_node.model import L4Proto, LbService

# Istio's protocol selection: these name prefixes / appProtocol values are HTTP.
HTTP_PROTOCOLS = ("http", "http2", "grpc", "grpc-web")


@dataclass(frozen=True)
class Route:
    """One ClusterIP:port of one service and the endpoints a connection to it may reach."""

    service: str  # namespace/name
    port_name: str
    app_protocol: str  # spec.ports[].appProtocol, "" when absent
    address: str  # the ClusterIP, IPv4 or IPv6
    port: int
    endpoints: tuple[tuple[str, int], ...] = ()

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version

    @property
    def mode(self) -> str:
        """`http` or `tcp`, by Istio's protocol selection (appProtocol, then name prefix)."""
        proto = (self.app_protocol or self.port_name.split("-", 1)[0]).lower()
        return "http" if proto in HTTP_PROTOCOLS else "tcp"

    @property
    def backend(self) -> str:
        """Envoy's cluster name `outbound|PORT||NAME.NS` in the characters HAProxy allows."""
        namespace, _, name = self.service.partition("/")
        suffix = "" if self.family == 4 else "_v6"
        return f"outbound_{self.port}__{name}.{namespace}{suffix}"

    @property
    def map_key(self) -> str:
        """What the outbound listener looks up: `dst_port@dst` of the original destination
        (HAProxy prints an IPv6 address compressed, as Python does)."""
        return f"{self.port}@{ipaddress.ip_address(self.address)}"

    @property
    def hostports(self) -> tuple[str, ...]:
        return tuple(
            f"[{a}]:{p}" if ipaddress.ip_address(a).version == 6 else f"{a}:{p}"
            for a, p in self.endpoints
        )


@dataclass(frozen=True)
class Loaded:
    routes: list[Route]
    skipped: list[str]  # objects or ports not served, with the reason
    digest: str  # sha256 of the manifest files read (names and bytes)


def routes_of(
    svc: LbService,
    names: Mapping[tuple[int, str], str],
    app_protocols: Mapping[tuple[int, str], str],
) -> tuple[list[Route], list[str]]:
    """The TCP routes of one translated service; UDP frontends are named in the second list."""
    routes: list[Route] = []
    skipped: list[str] = []
    for fe, eps in sorted(svc.frontends.items()):
        key = (fe.port, str(fe.protocol))
        if fe.protocol != L4Proto.TCP:
            skipped.append(f"{svc.key} {fe.address}:{fe.port}/{fe.protocol}: not TCP, not proxied")
            continue
        routes.append(
            Route(
                svc.key,
                names.get(key, ""),
                app_protocols.get(key, ""),
                fe.address,
                fe.port,
                tuple((e.address, e.port) for e in eps),
            )
        )
    return routes, skipped


def _app_protocols(obj: Mapping[str, Any]) -> dict[tuple[int, str], str]:
    # The translator keeps no appProtocol (the agent balances L4 only): read it here.
    out: dict[tuple[int, str], str] = {}
    for p in (obj.get("spec") or {}).get("ports") or []:
        if isinstance(p, Mapping) and isinstance(p.get("appProtocol"), str):
            out[(int(p.get("port", 0)), str(p.get("protocol") or "TCP"))] = p["appProtocol"]
    return out


def load(directory: Path) -> Loaded:
    """Routes from every *.yaml/*.yml in `directory` (a missing directory has none)."""
    read = manifests.read(directory)
    routes: list[Route] = []
    skipped = list(read.skipped)
    for spec, obj, lb in read.translated():
        names = {(p.port, str(p.protocol)): p.name for p in spec.ports}
        got, left_out = routes_of(lb, names, _app_protocols(obj))
        routes += got
        skipped += left_out
    return Loaded(routes, skipped, read.digest)
