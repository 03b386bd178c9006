"""The one translation path: raw `v1 Service` + `discovery.k8s.io/v1 EndpointSlice` -> LbService.

Both sources (manifest directory, Kubernetes API) hand raw dicts to `parse_object`, which
validates one object on its own and returns a compact, immutable spec (`ServiceSpec`,
`SliceSpec`) or `Ignored`; it raises `InvalidObject` with what is wrong and how to fix it.
`translate` then joins one service with its slices. Cross-object rules (which slices belong
to which service, duplicate ClusterIP:port between services) live in `sources.store`.

Semantics follow kube-proxy where it has them:
- slices join their service through the `kubernetes.io/service-name` label;
- a service port takes its endpoints' port from the slice port with the same name and
  protocol (the EndpointSlice controller already resolved targetPort into it); failing
  that, from the slice port named like a named targetPort, or a numbered targetPort that
  the slice lists (or any numbered targetPort when the slice lists no ports at all, which
  hand-written manifests often do);
- only endpoints whose `conditions.ready` is true or absent (absent means ready) count,
  and only their first address (the others are the same pod);
- dual-stack: one frontend per clusterIP, fed by the slices of that address family;
- headless (`clusterIP: None`) and ExternalName services have nothing to balance: Ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kmesh_node.model import (
    LB_POLICY_ANNOTATION,
    Endpoint,
    Frontend,
    L4Proto,
    LbPolicy,
    LbService,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# Kubernetes' own API validation caps a slice at 1,000 endpoints; a bigger one cannot come
# from a real cluster, so it is a broken or hostile manifest.
MAX_ENDPOINTS_PER_SLICE = 1000
_PROTOCOLS = {"TCP": L4Proto.TCP, "UDP": L4Proto.UDP}
_FAMILY_OF_ADDRESS_TYPE = {"IPv4": 4, "IPv6": 6}
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}\Z")


class InvalidObject(ValueError):
    """An object that cannot be used; `reason` says what is wrong and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ObjectId(NamedTuple):
    """Identity of a Kubernetes object: kind + namespace/name (a tuple: hashed in C)."""

    kind: str  # "Service" or "EndpointSlice"
    key: str  # "namespace/name"

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    protocol: L4Proto
    target: int | str  # targetPort: a number, or a port name resolved through the slices


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A validated Service: only what translation needs."""

    key: str
    cluster_ips: tuple[tuple[str, int], ...]  # (address, family 4|6), at most one per family
    ports: tuple[ServicePort, ...]
    policy: LbPolicy | None  # from the annotation; None = the agent's default
    # Parts that were skipped while the rest is served (e.g. an SCTP port); each becomes a
    # Rejection, but the service still works.
    warnings: tuple[str, ...] = ()

    @property
    def oid(self) -> ObjectId:
        return ObjectId("Service", self.key)


@dataclass(frozen=True, slots=True)
class SlicePort:
    name: str
    port: int
    protocol: L4Proto


@dataclass(frozen=True, slots=True)
class SliceSpec:
    """A validated EndpointSlice: its service, family, ports and ready addresses."""

    key: str
    service_key: str
    family: int
    ports: tuple[SlicePort, ...]
    ready: tuple[str, ...]  # first address of each ready endpoint, normalised
    warnings: tuple[str, ...] = ()

    @property
    def oid(self) -> ObjectId:
        return ObjectId("EndpointSlice", self.key)


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid object with nothing to balance (headless, ExternalName, FQDN slice...)."""

    oid: ObjectId
    reason: str


Spec = ServiceSpec | SliceSpec | Ignored


def object_id(obj: Any) -> ObjectId | None:
    """Best-effort identity of a raw object, for error messages and bookkeeping."""
    if not isinstance(obj, Mapping):
        return None
    kind, meta = obj.get("kind"), obj.get("metadata")
    if not isinstance(kind, str) or not isinstance(meta, Mapping):
        return None
    name, ns = meta.get("name"), meta.get("namespace") or "default"
    if not isinstance(name, str) or not name or not isinstance(ns, str):
        return None
    return ObjectId(kind, f"{ns}/{name}")


def parse_object(obj: Any) -> Spec:
    """Validate one raw Service or EndpointSlice. Raises InvalidObject."""
    if not isinstance(obj, Mapping):
        raise InvalidObject(
            f"expected a mapping (a Kubernetes object), got {type(obj).__name__}; "
            "each YAML document must be one v1 Service or discovery.k8s.io/v1 EndpointSlice"
        )
    kind, api = obj.get("kind"), obj.get("apiVersion")
    if kind == "Service" and api == "v1":
        return parse_service(obj)
    if kind == "EndpointSlice" and api == "discovery.k8s.io/v1":
        return parse_slice(obj)
    raise InvalidObject(
        f"unsupported kind/apiVersion {kind!r}/{api!r}; only 'Service'/'v1' and "
        "'EndpointSlice'/'discovery.k8s.io/v1' are read (move other kinds out of the directory)"
    )


def _meta_key(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise InvalidObject("metadata is missing or not a mapping; add metadata.name")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidObject("metadata.name is missing or empty; give the object a name")
    ns = meta.get("namespace") or "default"
    if not isinstance(ns, str):
        raise InvalidObject(f"metadata.namespace {ns!r} is not a string; fix or remove it")
    return f"{ns}/{name}", meta


def _port_number(value: Any, what: str) -> int:
    # bool is an int subclass in Python: `port: true` must not become port 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidObject(f"{what} {value!r} is not a port number; use an integer 1-65535")
    return value


def _protocol(value: Any, what: str) -> L4Proto | None:
    """TCP/UDP, None for a valid protocol the datapath does not serve (SCTP)."""
    if value is None:
        return L4Proto.TCP
    proto = _PROTOCOLS.get(value)
    if proto is not None:
        return proto
    if value == "SCTP":
        return None
    raise InvalidObject(f"{what} {value!r} is not a protocol; use TCP, UDP (or SCTP)")


def _ip(value: Any, what: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise InvalidObject(f"{what} {value!r} is not an IP address string; quote a valid IP")
    if _CANONICAL_IPV4.match(value):
        return value, 4  # already canonical: skip ipaddress, 10x slower (10k+ per load)
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidObject(
            f"{what} {value!r} is not a valid IPv4/IPv6 address; fix the address"
        ) from None
    return str(addr), addr.version


def parse_service(obj: Mapping[str, Any]) -> ServiceSpec | Ignored:
    key, meta = _meta_key(obj)
    oid = ObjectId("Service", key)
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidObject("spec is missing or not a mapping; add spec.clusterIP and spec.ports")
    if spec.get("type") == "ExternalName":
        return Ignored(oid, "ExternalName service: DNS only, nothing to balance")
    raw_ips = spec.get("clusterIPs")
    single = spec.get("clusterIP")
    if raw_ips is None:
        raw_ips = [single] if single is not None else []
    if not isinstance(raw_ips, list):
        raise InvalidObject("spec.clusterIPs is not a list; write a list of 1 or 2 addresses")
    if "None" in raw_ips or single == "None":
        return Ignored(oid, "headless service (clusterIP: None): no virtual IP to balance")
    if not raw_ips or raw_ips == [""]:
        raise InvalidObject(
            "spec.clusterIP is missing; this agent does not allocate addresses, so set "
            "spec.clusterIP (and spec.clusterIPs for dual-stack) in the manifest"
        )
    if single not in (None, "") and single != raw_ips[0]:
        raise InvalidObject(
            f"spec.clusterIP {single!r} differs from spec.clusterIPs[0] {raw_ips[0]!r}; "
            "make them equal"
        )
    ips = tuple(_ip(v, "spec.clusterIPs entry") for v in raw_ips)
    if len(ips) > 2 or len({fam for _, fam in ips}) != len(ips):
        raise InvalidObject(
            f"spec.clusterIPs {list(raw_ips)!r}: list at most one IPv4 and one IPv6 address"
        )
    raw_ports = spec.get("ports")
    if not isinstance(raw_ports, list) or not raw_ports:
        raise InvalidObject("spec.ports is missing or empty; list at least one port")
    ports: list[ServicePort] = []
    warnings: list[str] = []
    seen: set[tuple[int, L4Proto]] = set()
    names: set[str] = set()
    for i, p in enumerate(raw_ports):
        what = f"spec.ports[{i}]"
        if not isinstance(p, Mapping):
            raise InvalidObject(f"{what} is not a mapping; write {{port: N, protocol: TCP}}")
        port = _port_number(p.get("port"), f"{what}.port")
        name = p.get("name") or ""
        if not isinstance(name, str):
            raise InvalidObject(f"{what}.name {name!r} is not a string")
        if len(raw_ports) > 1 and not name:
            raise InvalidObject(f"{what} has no name; every port needs one when there are several")
        if name in names:
            raise InvalidObject(f"{what}.name {name!r} is used twice; port names must be unique")
        names.add(name)
        proto = _protocol(p.get("protocol"), f"{what}.protocol")
        target = p.get("targetPort", port)
        if isinstance(target, str) and target.isdigit():
            target = int(target)  # YAML '8080' quoted: Kubernetes would store an int here
        if isinstance(target, str):
            if not target:
                raise InvalidObject(f"{what}.targetPort is empty; give a number or a port name")
        else:
            target = _port_number(target, f"{what}.targetPort")
        if proto is None:
            warnings.append(
                f"{what} ({name or port}) is SCTP, which the datapath does not balance; "
                "that port is skipped, the others are served"
            )
            continue
        if (port, proto) in seen:
            raise InvalidObject(f"{what}: port {port}/{proto} is listed twice; remove one")
        seen.add((port, proto))
        ports.append(ServicePort(name, port, proto, target))
    policy: LbPolicy | None = None
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping) and LB_POLICY_ANNOTATION in annotations:
        value = annotations[LB_POLICY_ANNOTATION]
        try:
            policy = LbPolicy(value)
        except ValueError:
            allowed = ", ".join(p.value for p in LbPolicy)
            warnings.append(
                f"annotation {LB_POLICY_ANNOTATION}={value!r} is not one of {allowed}; "
                "the agent's default policy is used"
            )
    return ServiceSpec(key, ips, tuple(ports), policy, tuple(warnings))


def parse_slice(obj: Mapping[str, Any]) -> SliceSpec | Ignored:
    key, meta = _meta_key(obj)
    oid = ObjectId("EndpointSlice", key)
    labels = meta.get("labels")
    svc_name = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, Mapping) else None
    if not isinstance(svc_name, str) or not svc_name:
        return Ignored(oid, f"no {SERVICE_NAME_LABEL} label: it belongs to no service")
    service_key = f"{key.split('/', 1)[0]}/{svc_name}"
    address_type = obj.get("addressType")
    if address_type == "FQDN":
        return Ignored(oid, "addressType FQDN: names cannot be balanced in the kernel")
    family = _FAMILY_OF_ADDRESS_TYPE.get(address_type)  # type: ignore[arg-type]
    if family is None:
        raise InvalidObject(f"addressType {address_type!r} is not IPv4, IPv6 or FQDN; set one")
    raw_eps = obj.get("endpoints") or []
    if not isinstance(raw_eps, list):
        raise InvalidObject("endpoints is not a list")
    if len(raw_eps) > MAX_ENDPOINTS_PER_SLICE:
        raise InvalidObject(
            f"{len(raw_eps)} endpoints in one slice; Kubernetes allows at most "
            f"{MAX_ENDPOINTS_PER_SLICE}: split them over several slices of the same service"
        )
    raw_ports = obj.get("ports") or []
    if not isinstance(raw_ports, list):
        raise InvalidObject("ports is not a list")
    ports: list[SlicePort] = []
    warnings: list[str] = []
    for i, p in enumerate(raw_ports):
        what = f"ports[{i}]"
        if not isinstance(p, Mapping):
            raise InvalidObject(f"{what} is not a mapping; write {{name: N, port: P}}")
        name = p.get("name") or ""
        if not isinstance(name, str):
            raise InvalidObject(f"{what}.name {name!r} is not a string")
        proto = _protocol(p.get("protocol"), f"{what}.protocol")
        if p.get("port") is None:
            # Kubernetes allows a port-less entry ("all ports"); kube-proxy cannot use it.
            warnings.append(f"{what} has no port number; it is skipped")
            continue
        number = _port_number(p.get("port"), f"{what}.port")
        if proto is not None:
            ports.append(SlicePort(name, number, proto))
    ready: list[str] = []
    for i, ep in enumerate(raw_eps):
        what = f"endpoints[{i}]"
        if not isinstance(ep, Mapping):
            raise InvalidObject(f"{what} is not a mapping; write {{addresses: [IP]}}")
        addrs = ep.get("addresses")
        if not isinstance(addrs, list) or not addrs:
            raise InvalidObject(f"{what}.addresses is missing or empty; list the endpoint's IP")
        normalised = []
        for a in addrs:
            ip, fam = _ip(a, f"{what}.addresses entry")
            if fam != family:
                raise InvalidObject(
                    f"{what} address {a!r} is not {address_type}; put it in a slice with "
                    "the matching addressType"
                )
            normalised.append(ip)
        conditions = ep.get("conditions")
        is_ready = conditions.get("ready") if isinstance(conditions, Mapping) else None
        if is_ready is None or is_ready is True:
            ready.append(normalised[0])
    return SliceSpec(key, service_key, family, tuple(ports), tuple(ready), tuple(warnings))


def _target_port(sp: ServicePort, ports: tuple[SlicePort, ...]) -> int | None:
    """The endpoint port for service port `sp` in a slice with `ports`, None if absent."""
    for p in ports:
        if p.name == sp.name and p.protocol == sp.protocol:
            return p.port
    target = sp.target
    if isinstance(target, str):
        for p in ports:
            if p.name == target and p.protocol == sp.protocol:
                return p.port
        return None
    if not ports:
        return target
    for p in ports:
        if p.port == target and p.protocol == sp.protocol:
            return target
    return None


def translate(svc: ServiceSpec, slices: Iterable[SliceSpec], default_policy: LbPolicy) -> LbService:
    """Join one service with its slices (all already belonging to it)."""
    by_family: dict[int, list[SliceSpec]] = {4: [], 6: []}
    for s in slices:
        by_family[s.family].append(s)
    frontends: dict[Frontend, tuple[Endpoint, ...]] = {}
    for address, family in svc.cluster_ips:
        family_slices = by_family[family]
        for sp in svc.ports:
            eps: set[tuple[str, int]] = set()
            for s in family_slices:
                target = _target_port(sp, s.ports)
                if target is not None:
                    eps.update((a, target) for a in s.ready)
            frontends[Frontend(address, sp.port, sp.protocol)] = tuple(
                Endpoint(a, p) for a, p in sorted(eps)
            )
    return LbService(svc.key, svc.policy or default_policy, frontends)
