"""The agent's desired state, independent of where it came from.

Sources (a manifest directory or the Kubernetes API) hand raw `v1 Service` and
`discovery.k8s.io/v1 EndpointSlice` objects to one translator, which turns them into
`LbService` values; the datapath only ever sees `LbService`. This module is the contract
between those halves: keep it small and free of I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class L4Proto(enum.StrEnum):
    """L4 protocol of a service port (Kubernetes spelling)."""

    TCP = "TCP"
    UDP = "UDP"


class LbPolicy(enum.StrEnum):
    """How a frontend picks one of its endpoints."""

    RANDOM = "random"
    ROUND_ROBIN = "round_robin"


# Annotation on a Service that overrides the agent's default --lb policy.
LB_POLICY_ANNOTATION = "kmesh-lab.io/lb-policy"


@dataclass(frozen=True, order=True)
class Frontend:
    """One ClusterIP:port/protocol that connect/sendmsg hooks rewrite. IPv4 or IPv6."""

    address: str
    port: int
    protocol: L4Proto = L4Proto.TCP


@dataclass(frozen=True, order=True)
class Endpoint:
    """One ready backend address with the target port for a given frontend."""

    address: str
    port: int


@dataclass(frozen=True)
class LbService:
    """Everything the datapath needs for one Service (namespace/name).

    `frontends` maps each frontend to its ready endpoints, in a stable order (sorted), so
    that the same input always yields the same maps. An empty tuple means "no ready
    endpoint": the datapath leaves such connections untouched and counts them.
    """

    key: str  # "namespace/name"
    policy: LbPolicy
    frontends: dict[Frontend, tuple[Endpoint, ...]] = field(default_factory=dict)

    def endpoint_count(self) -> int:
        return sum(len(eps) for eps in self.frontends.values())


@dataclass(frozen=True)
class Rejection:
    """An object the translator refused, with enough context to find and fix it."""

    where: str  # file path (manifests) or "kubernetes" (API)
    obj: str  # "Kind namespace/name", or "document N" when the object has no name
    reason: str  # what is wrong and what to do about it


class Sink(Protocol):
    """What a source drives. The agent implements it; tests may implement it too.

    Calls come from one thread (the source's), in order.
    """

    def upsert(self, svc: LbService) -> None:
        """Create or replace the service `svc.key`."""

    def delete(self, key: str) -> None:
        """Remove the service `key` (no-op when unknown)."""

    def synced(self) -> None:
        """The initial listing is complete: services never upserted since start may go.

        Called once after the first full listing, and again after every relist (e.g. after
        a 410 Gone), so that state adopted from a previous agent run is reconciled.
        """

    def rejected(self, rejection: Rejection) -> None:
        """An object was refused; every other service keeps working."""
