"""The flood suite's plan (seed 003's Cluster-Flooder and its A/B runs). Pure: no I/O.

A *stage* floods the lab with `pods` flood pods and `services` flood services, each service
having `endpoints` of the flood pods as endpoints (the thesis: every pod an endpoint of every
service, so `endpoints == pods`). Two target services point at the lab's nginx server pods:

- `flood-target-ipt`: only in kube-proxy's rules (never in the agent's watched directory,
  because the agent's connect4 hook runs first and would rewrite it), measured with the
  kube-proxy rules hooked into the node's built-in chains (plane `iptables`);
- `flood-target-km`: in the agent's directory as well (and in kube-proxy's rules, as a real
  cluster would have it), measured with kube-proxy's hooks removed (planes `kmesh_node`,
  `kmesh_node_accel`): the rules stay loaded but unreachable, like a kube-proxy replacement.

The target names sort into the middle of the flood services, so in kube-proxy's KUBE-SERVICES
chain (sorted by name here; a Go map's random order in kube-proxy, so the middle on average)
a new connection to the target walks about half of the service rules before it matches.
The suite reads the target's position back from the kernel and records it.

A *block* is the planes measured together with one agent configuration: `base` (agent as
started: iptables vs kmesh_node) and `accel` (agent with --accelerate: iptables vs
kmesh_node_accel). Within a block, every repetition measures every (rate, plane) once, the
plane order rotated per repetition so that neither plane always runs first (A/B pairs,
interleaved), then the new-connection throughput of every plane: the TCP connection rate
(connect + close) and the rate of short HTTP requests, one per connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PLANES = ("iptables", "kmesh_node", "kmesh_node_accel")
BLOCKS: dict[str, tuple[str, ...]] = {
    "base": ("iptables", "kmesh_node"),
    "accel": ("iptables", "kmesh_node_accel"),
}
# Names of the two targets; "flood-0NNNN-t..." sorts just before flood-0NNNN (see target_names).
TARGET_SUFFIX = {"iptables": "ipt", "kmesh_node": "km", "kmesh_node_accel": "km"}
POD_PREFIX = "flood-"
POSITIONS = ("middle", "last")
# Connections to a server pod's IP (no service) with kube-proxy's hooks in and out: measures
# what the hooks alone cost every new connection (the mechanism behind the A/B difference).
MECHANISM_PLANES = ("pod_ip_unhooked", "pod_ip_hooked")
# The new-connection throughput runs, each throughput_s long with throughput_connections:
# connrate = TCP connect + close as fast as it goes (netperf's TCP_CC, tools/connrate.c),
# throughput = one short HTTP request per connection (the load wrapper, keepalive off).
THROUGHPUT_KINDS = ("connrate", "throughput")


class PlanError(ValueError):
    """Parameters that cannot make a plan; the message names the fix."""


@dataclass(frozen=True)
class Stage:
    name: str  # e.g. "thesis", "svc10k"
    pods: int
    services: int
    endpoints: int  # endpoints per flood service (<= pods)
    rates: tuple[int, ...]  # requests per second of the latency runs
    keepalive: tuple[bool, ...]  # connection reuse of the latency runs
    repetitions: int
    duration_s: int  # of one latency run
    throughput_s: int  # of one connrate run and one throughput run (0 = none)
    throughput_connections: int  # concurrent connections (connrate: worker processes)
    blocks: tuple[str, ...] = ("base",)
    first_index: int = 60000  # service index of flood-00000 (its VIP follows)
    target_position: str = "middle"  # where the targets sort in KUBE-SERVICES: middle | last
    connects: int = 300  # timed connect()s per plane and repetition (0 = none)

    def kube_nat_rules(self) -> int:
        """NAT rules kube-proxy's render holds for this stage (5 base + 3N+2 per service with
        N endpoints; the two targets included). Only for planning: the suite reports what
        it counts in the kernel."""
        return 5 + self.services * (3 * self.endpoints + 2) + 2 * (3 * 2 + 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Run:
    """One measurement: a latency run at a rate, or a throughput run (rate None)."""

    stage: str
    block: str
    plane: str
    repetition: int
    order: int  # position within its repetition (0-based)
    rate: int | None = None
    keepalive: bool = False
    kind: str = "latency"  # "latency" | "connrate" | "throughput" | "connect"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def scenario(self) -> str:
        return scenario_name(
            self.stage, self.block, self.plane, self.kind, self.rate, self.keepalive
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scenario": self.scenario}


def scenario_name(
    stage: str,
    block: str,
    plane: str,
    kind: str,
    rate: int | None = None,
    keepalive: bool = False,
) -> str:
    """`<stage>.<block>.<plane>.throughput` or `<stage>.<block>.<plane>.rps=R.ka=on|off`:
    the iptables plane is measured in each block, beside the plane it is paired with."""
    if kind in (*THROUGHPUT_KINDS, "connect"):
        return f"{stage}.{block}.{plane}.{kind}"
    return f"{stage}.{block}.{plane}.rps={rate}.ka={'on' if keepalive else 'off'}"


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlanError(f"suite_flood {name}: {value!r} must be a whole number >= 1")
    return value


def stage_from(name: str, raw: Mapping[str, Any]) -> Stage:
    """A stage from the role's profile dict; every bad value is named with its fix."""
    known = set(Stage.__dataclass_fields__) - {"name"}
    extra = set(raw) - known
    if extra:
        raise PlanError(
            f"suite_flood stage {name!r}: unknown keys {sorted(extra)}; known: {sorted(known)}"
        )
    try:
        pods = _positive(f"{name}.pods", raw["pods"])
        services = _positive(f"{name}.services", raw["services"])
        endpoints = _positive(f"{name}.endpoints", raw.get("endpoints", pods))
        reps = _positive(f"{name}.repetitions", raw["repetitions"])
        duration = _positive(f"{name}.duration_s", raw["duration_s"])
        rates = tuple(_positive(f"{name}.rates", r) for r in raw["rates"])
    except KeyError as exc:
        raise PlanError(
            f"suite_flood stage {name!r} lacks {exc.args[0]!r}: give pods, services, "
            f"repetitions, duration_s and rates"
        ) from None
    if endpoints > pods:
        raise PlanError(
            f"suite_flood stage {name!r}: endpoints {endpoints} > pods {pods}; an endpoint is "
            f"a flood pod, so use endpoints <= pods"
        )
    if reps < 5:
        raise PlanError(
            f"suite_flood stage {name!r}: repetitions {reps} < 5; the A/B comparison needs "
            f"at least 5 interleaved pairs to tell a difference from noise"
        )
    if services > 99000:
        raise PlanError(f"suite_flood stage {name!r}: services {services} > 99000 (names)")
    blocks = tuple(raw.get("blocks", ("base",)))
    for b in blocks:
        if b not in BLOCKS:
            raise PlanError(f"suite_flood stage {name!r}: block {b!r} is not one of {list(BLOCKS)}")
    keepalive = tuple(bool(k) for k in raw.get("keepalive", (False,)))
    position = raw.get("target_position", "middle")
    if position not in POSITIONS:
        raise PlanError(
            f"suite_flood stage {name!r}: target_position {position!r} is not one of {POSITIONS}"
        )
    return Stage(
        name=name,
        pods=pods,
        services=services,
        endpoints=endpoints,
        rates=rates,
        keepalive=keepalive or (False,),
        repetitions=reps,
        duration_s=duration,
        throughput_s=int(raw.get("throughput_s", 0)),
        throughput_connections=_positive(
            f"{name}.throughput_connections", raw.get("throughput_connections", 8)
        ),
        blocks=blocks,
        first_index=int(raw.get("first_index", 60000)),
        target_position=position,
        connects=int(raw.get("connects", 300)),
    )


def stages_from(raw: Mapping[str, Mapping[str, Any]]) -> list[Stage]:
    if not raw:
        raise PlanError("suite_flood: the profile has no stages; give at least one")
    return [stage_from(name, spec) for name, spec in raw.items()]


def rotate(items: Sequence[str], k: int) -> list[str]:
    """items rotated left by k (repetition k starts with a different plane)."""
    n = len(items)
    return [items[(i + k) % n] for i in range(n)]


def schedule(stage: Stage, block: str) -> list[list[Run]]:
    """The runs of one block, one list per repetition, planes interleaved and rotated."""
    planes = BLOCKS[block]
    reps: list[list[Run]] = []
    for rep in range(1, stage.repetitions + 1):
        runs: list[Run] = []
        for keepalive in stage.keepalive:
            for rate in stage.rates:
                for plane in rotate(planes, rep - 1):
                    runs.append(Run(stage.name, block, plane, rep, len(runs), rate, keepalive))
        if stage.throughput_s > 0:
            extra = MECHANISM_PLANES if block == "base" else ()
            for kind in THROUGHPUT_KINDS:
                for plane in rotate([*planes, *extra], rep - 1):
                    runs.append(Run(stage.name, block, plane, rep, len(runs), kind=kind))
        if stage.connects > 0:
            extra = MECHANISM_PLANES if block == "base" else ()
            for plane in rotate([*planes, *extra], rep - 1):
                runs.append(Run(stage.name, block, plane, rep, len(runs), kind="connect"))
        reps.append(runs)
    return reps


def service_name(index: int) -> str:
    return f"flood-{index:05d}"


def target_names(stage: Stage) -> dict[str, str]:
    """plane -> target service name: sorts just before the middle flood service, or after
    the last one ("-" sorts before the ":" that follows a name in ns/name:port)."""
    index = stage.services // 2 if stage.target_position == "middle" else stage.services
    return {plane: f"{service_name(index)}-t{TARGET_SUFFIX[plane]}" for plane in PLANES}


def pod_names(count: int) -> list[str]:
    return [f"{POD_PREFIX}{i:03d}" for i in range(count)]


def endpoint_indices(service: int, endpoints: int, pods: int) -> list[int]:
    """Which flood pods serve a service: `endpoints` consecutive pods, rotated by index so
    every pod serves about as many services (all pods when endpoints == pods)."""
    return [(service + j) % pods for j in range(endpoints)]


def plan(stages: Sequence[Stage]) -> dict[str, Any]:
    """The whole plan as JSON for the role: stages, blocks and repetitions in order."""
    out: list[dict[str, Any]] = []
    for st in stages:
        blocks = []
        for block in st.blocks:
            blocks.append(
                {
                    "block": block,
                    "planes": list(BLOCKS[block]),
                    "repetitions": [[r.to_dict() for r in reps] for reps in schedule(st, block)],
                }
            )
        out.append(
            {
                "stage": st.to_dict(),
                "targets": target_names(st),
                "planned_kube_nat_rules": st.kube_nat_rules(),
                "blocks": blocks,
            }
        )
    return {"stages": out}


def scenarios(stage: Stage) -> list[str]:
    """Every measured scenario of a stage (what a resumed run checks off)."""
    names = [f"{stage.name}.setup"]
    for block in stage.blocks:
        for reps in schedule(stage, block)[:1]:
            names += [r.scenario for r in reps]
    return list(dict.fromkeys(names))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m kmesh_lab.floodplan STAGES_JSON [DONE_JSON]`: the plan as JSON; with the
    JSON list of complete scenarios, each stage lists what it still has to measure."""
    import json
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m kmesh_lab.floodplan STAGES_JSON [DONE_JSON]", file=sys.stderr)
        return 2
    try:
        stages = stages_from(json.loads(args[0]))
        done = set(json.loads(args[1])) if len(args) > 1 else set()
    except (PlanError, json.JSONDecodeError, TypeError) as exc:
        print(f"floodplan: {exc}", file=sys.stderr)
        return 2
    out = plan(stages)
    for entry, st in zip(out["stages"], stages, strict=True):
        entry["pending"] = [s for s in scenarios(st) if s not in done]
        entry["raw"] = dict(json.loads(args[0])[st.name])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
