"""Render the rules kube-proxy would install for a set of services. Pure: no I/O.

Two modes, both as ONE restore input, written the way kube-proxy's own proxiers write them
(kubernetes pkg/proxy/iptables/proxier.go and pkg/proxy/nftables/proxier.go, recent
releases; the golden tests in tests/unit/test_kube_proxy.py are copied from those files'
test expectations):

- iptables: `*filter` and `*nat` for `iptables-restore --noflush` (nft or legacy backend,
  same text). KUBE-SERVICES has one rule per ClusterIP:port -> KUBE-SVC-<hash>; KUBE-SVC
  marks off-cluster sources for masquerade, then picks endpoint i of N with `-m statistic
  --mode random --probability 1/(N-i)` (last one unconditional) -> KUBE-SEP-<hash>, which
  marks hairpin traffic and DNATs. Hashes: first 16 chars of base32(sha256(portName +
  protocol [+ endpoint])) (portProtoHash / servicePortEndpointChainName).
- nftables: table `ip kube-proxy`; the `services` chain looks up a verdict map keyed by
  `ipv4_addr . inet_proto . inet_service`; each service chain picks an endpoint with
  `numgen random mod N vmap`; each endpoint chain dnats. Chain names are
  `<8-char hash>-ns/name/proto/port` (hashAndTruncate).

Only what a ClusterIP service needs is rendered (the lab has no NodePorts, external IPs,
load balancers or session affinity); those features are named, not silently faked.
The rendered text is canonical (chains and rules in the order kube-proxy's tests sort them),
so equal inputs give byte-equal outputs and a checksum tells whether anything changed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kmesh_node.model import LbService

# kube-proxy defaults: --iptables-masquerade-bit 14 -> 0x4000.
MASQ_MARK = "0x4000"
# Past this many endpoints kube-proxy drops per-endpoint comments ("large cluster mode").
LARGE_CLUSTER_ENDPOINTS = 1000
# nftables chain names may be 256 characters; kube-proxy keeps 16 for prefixes.
NFT_CHAIN_BASE_MAX = 256 - 16

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's; kube-proxy writes an identical copy
# Per-service chain prefixes (isServiceChainName): stale ones are deleted on each apply.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-", "KUBE-EXT-")
NFT_TABLE = "kube-proxy"


@dataclass(frozen=True)
class Jump:
    """A rule kube-proxy keeps in a built-in chain (EnsureRule, outside the restore)."""

    table: str
    src: str  # built-in chain
    dst: str  # our chain
    comment: str
    extra: tuple[str, ...] = ()

    def args(self) -> str:
        parts = [*self.extra]
        if self.comment:
            parts += ["-m", "comment", "--comment", f'"{self.comment}"']
        return " ".join([*parts, "-j", self.dst])


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
# iptablesJumpChains + iptablesKubeletJumpChains, in kube-proxy's order.
JUMPS: tuple[Jump, ...] = (
    Jump(
        "filter",
        "INPUT",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    Jump(
        "filter",
        "FORWARD",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    Jump("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    Jump("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    Jump("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    Jump("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    Jump("filter", "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump("filter", "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    Jump("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    Jump("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    Jump("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    Jump("filter", "INPUT", KUBE_FIREWALL, ""),
    Jump("filter", "OUTPUT", KUBE_FIREWALL, ""),
)


@dataclass(frozen=True)
class Config:
    """The kube-proxy flags that change the rendered text."""

    cluster_cidr: str  # --cluster-cidr: the local-traffic detector ("! -s CIDR" masquerades)
    service_cidrs: tuple[str, ...] = ()  # nftables: drop traffic to unallocated ClusterIPs
    node_port_ips: tuple[str, ...] = ()  # nftables: @nodeport-ips
    masquerade_mark: str = MASQ_MARK
    random_fully: bool = True  # iptables >= 1.6.2 has MASQUERADE --random-fully
    nfacct: bool = False  # kube-proxy counts dropped INVALID packets when nfacct works
    localhost_nodeports: bool = True  # kube-proxy's default; adds the KUBE-FIREWALL rule


@dataclass(frozen=True)
class ServicePort:
    """One ClusterIP:port of one service, with its ready endpoints (kube-proxy's unit)."""

    namespace: str
    name: str
    port_name: str
    cluster_ip: str
    port: int
    protocol: str  # "tcp" | "udp" (lower case, as kube-proxy hashes it)
    endpoints: tuple[tuple[str, int], ...] = ()

    @property
    def port_name_string(self) -> str:
        """proxy.ServicePortName.String(): ns/name:port, or ns/name for an unnamed port."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base


def _b32_sha256(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def port_proto_hash(port_name: str, protocol: str) -> str:
    return _b32_sha256(port_name + protocol)[:16]


def svc_chain(sp: ServicePort) -> str:
    return "KUBE-SVC-" + port_proto_hash(sp.port_name_string, sp.protocol)


def sep_chain(sp: ServicePort, endpoint: str) -> str:
    return "KUBE-SEP-" + _b32_sha256(sp.port_name_string + sp.protocol + endpoint)[:16]


def probability(n: int) -> str:
    """kube-proxy's computeProbability: fmt.Sprintf("%0.10f", 1.0/float64(n))."""
    return f"{1.0 / n:.10f}"


def service_ports(svc: LbService, port_names: Mapping[tuple[int, str], str]) -> list[ServicePort]:
    """The IPv4 service ports of an LbService; `port_names` maps (port, "TCP"/"UDP") -> name.

    The port name is part of every chain name kube-proxy derives, and LbService does not
    carry it, so the caller passes it from the Service's spec.ports.
    """
    namespace, _, name = svc.key.partition("/")
    out = []
    for fe, eps in sorted(svc.frontends.items()):
        if ":" in fe.address:
            continue  # the IPv6 proxier is a separate instance; the lab is IPv4
        proto = str(fe.protocol)
        out.append(
            ServicePort(
                namespace,
                name,
                port_names.get((fe.port, proto), ""),
                fe.address,
                fe.port,
                proto.lower(),
                tuple((e.address, e.port) for e in eps),
            )
        )
    return out


def _q(text: str) -> str:
    return f'"{text}"'


@dataclass
class Table:
    """One table of an iptables-restore input: chain declarations, then rules."""

    name: str
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


def _chain_order(name: str) -> tuple[int, str]:
    # kube-proxy's test sort: KUBE-NODEPORTS, KUBE-SERVICES, then by name.
    return ({KUBE_NODEPORTS: 0, KUBE_SERVICES: 1}.get(name, 2), name)


def _sorted_table(name: str, chains: Iterable[str], rules: dict[str, list[str]]) -> Table:
    order = sorted(set(chains), key=_chain_order)
    table = Table(name, [f":{c} - [0:0]" for c in order])
    for chain in order:
        table.rules.extend(rules.get(chain, []))
    return table


def iptables_tables(ports: Iterable[ServicePort], cfg: Config) -> list[Table]:
    """kube-proxy's iptables-restore payload (filter, nat), canonical order."""
    ports = sorted(ports, key=lambda p: (p.port_name_string, p.protocol, p.port))
    mark = cfg.masquerade_mark
    large = sum(len(p.endpoints) for p in ports) > LARGE_CLUSTER_ENDPOINTS

    f_chains = [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS]
    f_chains.append(KUBE_PROXY_FIREWALL)
    f_rules: dict[str, list[str]] = {}
    n_chains = [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]
    n_rules: dict[str, list[str]] = {}

    def add(rules: dict[str, list[str]], chain: str, text: str) -> None:
        rules.setdefault(chain, []).append(f"-A {chain} {text}")

    masq = "-j MASQUERADE --random-fully" if cfg.random_fully else "-j MASQUERADE"
    add(n_rules, KUBE_POSTROUTING, f"-m mark ! --mark {mark}/{mark} -j RETURN")
    add(n_rules, KUBE_POSTROUTING, f"-j MARK --xor-mark {mark}")
    add(
        n_rules,
        KUBE_POSTROUTING,
        f"-m comment --comment {_q('kubernetes service traffic requiring SNAT')} {masq}",
    )
    add(n_rules, KUBE_MARK_MASQ, f"-j MARK --or-mark {mark}")
    if cfg.localhost_nodeports:
        f_chains.append(KUBE_FIREWALL)
        add(
            f_rules,
            KUBE_FIREWALL,
            f"-m comment --comment {_q('block incoming localnet connections')} "
            "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
            "-j DROP",
        )

    for sp in ports:
        name, proto = sp.port_name_string, sp.protocol
        match = f"-m {proto} -p {proto} -d {sp.cluster_ip} --dport {sp.port}"
        if not sp.endpoints:
            add(
                f_rules,
                KUBE_SERVICES,
                f"-m comment --comment {_q(name + ' has no endpoints')} {match} -j REJECT",
            )
            continue
        svc = svc_chain(sp)
        cluster_ip = f"-m comment --comment {_q(name + ' cluster IP')} {match}"
        add(n_rules, KUBE_SERVICES, f"{cluster_ip} -j {svc}")
        n_chains.append(svc)
        add(n_rules, svc, f"{cluster_ip} ! -s {cfg.cluster_cidr} -j {KUBE_MARK_MASQ}")
        count = len(sp.endpoints)
        for i, (address, port) in enumerate(sp.endpoints):
            endpoint = f"{address}:{port}"
            sep = sep_chain(sp, endpoint)
            comment = "" if large else f"-m comment --comment {_q(f'{name} -> {endpoint}')} "
            chance = (
                f"-m statistic --mode random --probability {probability(count - i)} "
                if i < count - 1
                else ""
            )
            add(n_rules, svc, f"{comment}{chance}-j {sep}")
            n_chains.append(sep)
            sep_comment = "" if large else f"-m comment --comment {name} "
            add(n_rules, sep, f"{sep_comment}-s {address} -j {KUBE_MARK_MASQ}")
            add(
                n_rules,
                sep,
                f"{sep_comment}-m {proto} -p {proto} -j DNAT --to-destination {endpoint}",
            )

    add(
        n_rules,
        KUBE_SERVICES,
        "-m comment --comment "
        + _q("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
        + " -m addrtype --dst-type LOCAL"
        + ("" if cfg.localhost_nodeports else " ! -d 127.0.0.0/8")
        + f" -j {KUBE_NODEPORTS}",
    )
    invalid = "-m conntrack --ctstate INVALID"
    if cfg.nfacct:
        invalid += " -m nfacct --nfacct-name ct_state_invalid_dropped_pkts"
    add(f_rules, KUBE_FORWARD, f"{invalid} -j DROP")
    add(
        f_rules,
        KUBE_FORWARD,
        f"-m comment --comment {_q('kubernetes forwarding rules')} "
        f"-m mark --mark {mark}/{mark} -j ACCEPT",
    )
    add(
        f_rules,
        KUBE_FORWARD,
        f"-m comment --comment {_q('kubernetes forwarding conntrack rule')} "
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    )
    return [_sorted_table("filter", f_chains, f_rules), _sorted_table("nat", n_chains, n_rules)]


def restore_text(tables: Iterable[Table]) -> str:
    out: list[str] = []
    for t in tables:
        out += [f"*{t.name}", *t.chains, *t.rules, "COMMIT"]
    return "\n".join(out) + "\n"


def render_iptables(ports: Iterable[ServicePort], cfg: Config) -> str:
    """kube-proxy's iptables-restore input for `ports`, as its proxier_test.go shows it."""
    return restore_text(iptables_tables(ports, cfg))


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)


def saved_chains(save_text: str) -> dict[str, set[str]]:
    """Chains per table in `iptables-save` output."""
    chains: dict[str, set[str]] = {}
    table = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            chains.setdefault(table, set())
        elif line.startswith(":") and table:
            chains[table].add(line[1:].split(" ", 1)[0])
    return chains


def saved_jumps(save_text: str) -> dict[str, list[str]]:
    """Rules per table (as `-A ...` lines) in built-in chains that jump to a KUBE-* chain."""
    jumps: dict[str, list[str]] = {}
    table = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A ") and table:
            words = line.split()
            own = len(words) > 1 and words[1].startswith("KUBE-")
            if not own and _target(line).startswith("KUBE-"):
                jumps.setdefault(table, []).append(line)
    return jumps


def _target(line: str) -> str:
    words = line.split()
    return words[words.index("-j") + 1] if "-j" in words[:-1] else ""


def has_jump(lines: list[str], jump: Jump) -> bool:
    return any(line.split()[1] == jump.src and _target(line) == jump.dst for line in lines)


def apply_input(tables: list[Table], save_text: str) -> str:
    """One `iptables-restore --noflush` input that makes the kernel equal to `tables`.

    Declaring a chain flushes it, so every chain of the payload is rewritten; per-service
    chains in the kernel that the payload no longer has are flushed and deleted (as
    kube-proxy does); jumps from built-in chains are inserted only where missing (kube-proxy
    keeps them with EnsureRule, outside the restore, so that it never flushes built-ins).
    """
    existing = saved_chains(save_text)
    jumps = saved_jumps(save_text)
    out: list[Table] = []
    for t in tables:
        wanted = {c[1:].split(" ", 1)[0] for c in t.chains}
        stale = sorted(c for c in existing.get(t.name, set()) - wanted if is_service_chain(c))
        missing = [
            f"-I {j.src} {j.args()}"
            for j in JUMPS
            if j.table == t.name and not has_jump(jumps.get(t.name, []), j)
        ]
        out.append(
            Table(
                t.name,
                [*t.chains, *(f":{c} - [0:0]" for c in stale)],
                [*missing, *t.rules, *(f"-X {c}" for c in stale)],
            )
        )
    return restore_text(out)


def removal_input(save_text: str) -> str:
    """One `iptables-restore --noflush` input that removes every KUBE-* chain and jump."""
    existing = saved_chains(save_text)
    jumps = saved_jumps(save_text)
    out: list[Table] = []
    for table in sorted(existing):
        ours = sorted(c for c in existing[table] if c.startswith("KUBE-"))
        deletes = ["-D" + line[2:] for line in jumps.get(table, [])]
        if ours or deletes:
            out.append(
                Table(
                    table, [f":{c} - [0:0]" for c in ours], [*deletes, *(f"-X {c}" for c in ours)]
                )
            )
    return restore_text(out) if out else ""


# --- nftables ---------------------------------------------------------------------------


def hash_and_truncate(name: str) -> str:
    name = _b32_sha256(name)[:8] + "-" + name
    if len(name) > NFT_CHAIN_BASE_MAX:
        name = name[: NFT_CHAIN_BASE_MAX - 3] + "..."
    return name


def nft_service_chain(sp: ServicePort) -> str:
    base = f"{sp.namespace}/{sp.name}/{sp.protocol}/{sp.port_name}"
    return "service-" + hash_and_truncate(base)


def nft_endpoint_chain(sp: ServicePort, address: str, port: int) -> str:
    endpoint = f"{address}/{port}".replace(":", "/") if ":" in address else f"{address}/{port}"
    base = f"{sp.namespace}/{sp.name}/{sp.protocol}/{sp.port_name}__{endpoint}"
    return "endpoint-" + hash_and_truncate(base)


def nft_base(cfg: Config) -> list[str]:
    """The table, sets, maps, base chains and fixed rules (the test's `baseRules`)."""
    t = f"ip {NFT_TABLE}"
    mark = cfg.masquerade_mark
    vmap3 = "type ipv4_addr . inet_proto . inet_service : verdict"
    lines = [
        f'add table {t} {{ comment "rules for kube-proxy" ; }}',
        f'add set {t} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
        f"add set {t} nodeport-ips {{ type ipv4_addr ; "
        'comment "IPs that accept NodePort traffic" ; }',
        f"add map {t} firewall-ips {{ {vmap3} ; "
        'comment "destinations that are subject to LoadBalancerSourceRanges" ; }',
        f"add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
        f"add map {t} no-endpoint-services {{ {vmap3} ; "
        'comment "vmap to drop or reject packets to services with no endpoints" ; }',
        f"add map {t} service-ips {{ {vmap3} ; "
        'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        f"add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "NodePort traffic" ; }',
        f"add chain {t} cluster-ips-check",
        f"add chain {t} filter-prerouting-pre-dnat "
        "{ type filter hook prerouting priority -110 ; }",
        f"add chain {t} filter-output-pre-dnat {{ type filter hook output priority -110 ; }}",
        f"add chain {t} filter-forward {{ type filter hook forward priority 0 ; }}",
        f"add chain {t} filter-input {{ type filter hook input priority 0 ; }}",
        f"add chain {t} filter-output {{ type filter hook output priority 0 ; }}",
        f"add chain {t} firewall-check",
        f"add chain {t} mark-for-masquerade",
        f"add chain {t} masquerading",
        f"add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
        f"add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}",
        f"add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"add chain {t} nodeport-endpoints-check",
        f'add chain {t} reject-chain {{ comment "helper for @no-endpoint-services / '
        '@no-endpoint-nodeports" ; }',
        f"add chain {t} services",
        f"add chain {t} service-endpoints-check",
        f"add rule {t} cluster-ips-check ip daddr @cluster-ips reject "
        'comment "Reject traffic to invalid ports of ClusterIPs"',
    ]
    if cfg.service_cidrs:
        lines.append(
            f"add rule {t} cluster-ips-check ip daddr {{ {', '.join(cfg.service_cidrs)} }} drop "
            'comment "Drop traffic to unallocated ClusterIPs"'
        )
    lines += [
        f"add rule {t} filter-prerouting-pre-dnat ct state new jump firewall-check",
        f"add rule {t} filter-forward ct state new jump service-endpoints-check",
        f"add rule {t} filter-forward ct state new jump cluster-ips-check",
        f"add rule {t} filter-input ct state new jump nodeport-endpoints-check",
        f"add rule {t} filter-input ct state new jump service-endpoints-check",
        f"add rule {t} filter-output ct state new jump service-endpoints-check",
        f"add rule {t} filter-output-pre-dnat ct state new jump firewall-check",
        f"add rule {t} filter-output ct state new jump cluster-ips-check",
        f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        f"add rule {t} mark-for-masquerade mark set mark or {mark}",
        f"add rule {t} masquerading mark and {mark} == 0 return",
        f"add rule {t} masquerading mark set mark xor {mark}",
        f"add rule {t} masquerading masquerade fully-random",
        f"add rule {t} nat-output jump services",
        f"add rule {t} nat-postrouting jump masquerading",
        f"add rule {t} nat-prerouting jump services",
        f"add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips "
        "meta l4proto . th dport vmap @no-endpoint-nodeports",
        f"add rule {t} reject-chain reject",
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport "
        "vmap @service-nodeports",
        f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport "
        "vmap @no-endpoint-services",
    ]
    lines += [f"add element {t} nodeport-ips {{ {ip} }}" for ip in cfg.node_port_ips]
    return lines


def nft_service(sp: ServicePort, cfg: Config) -> list[str]:
    """The chains, rules and map elements of one service port."""
    t = f"ip {NFT_TABLE}"
    proto = sp.protocol
    lines: list[str] = []
    if not sp.endpoints:
        return [
            f"add element {t} cluster-ips {{ {sp.cluster_ip} }}",
            f"add element {t} no-endpoint-services {{ {sp.cluster_ip} . {proto} . {sp.port} "
            f'comment "{sp.port_name_string}" : goto reject-chain }}',
        ]
    svc = nft_service_chain(sp)
    eps = [(a, p, nft_endpoint_chain(sp, a, p)) for a, p in sp.endpoints]
    vmap = " , ".join(f"{i} : goto {chain}" for i, (_, _, chain) in enumerate(eps))
    lines += [
        f"add chain {t} {svc}",
        f"add rule {t} {svc} ip daddr {sp.cluster_ip} ip saddr != {cfg.cluster_cidr} "
        "jump mark-for-masquerade",
        f"add rule {t} {svc} numgen random mod {len(eps)} vmap {{ {vmap} }}",
    ]
    for address, port, chain in sorted(eps, key=lambda e: e[2]):
        lines += [
            f"add chain {t} {chain}",
            f"add rule {t} {chain} ip saddr {address} jump mark-for-masquerade",
            f"add rule {t} {chain} meta l4proto {proto} dnat to {address}:{port}",
        ]
    lines += [
        f"add element {t} cluster-ips {{ {sp.cluster_ip} }}",
        f"add element {t} service-ips {{ {sp.cluster_ip} . {proto} . {sp.port} : goto {svc} }}",
    ]
    return lines


def render_nftables(ports: Iterable[ServicePort], cfg: Config) -> str:
    """kube-proxy's nftables ruleset for `ports`, as its proxier_test.go dumps it."""
    lines = nft_base(cfg)
    for sp in sorted(ports, key=lambda p: (p.port_name_string, p.protocol, p.port)):
        lines += nft_service(sp, cfg)
    # Objects before what references them (a vmap may only name existing chains), in the
    # order knftables' Fake.Dump writes them; the sort is stable, so rules keep their order.
    lines.sort(key=lambda line: _NFT_OBJECT_ORDER[line.split(" ", 2)[1]])
    return "\n".join(lines) + "\n"


_NFT_OBJECT_ORDER = {"table": 0, "set": 1, "map": 2, "chain": 3, "rule": 4, "element": 5}


def nft_apply_input(rendered: str) -> str:
    """One `nft -f` transaction replacing the table atomically (create-then-delete first,
    so it works whether or not the table exists)."""
    return f"add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n{rendered}"


def nft_removal_input() -> str:
    return f"add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n"


def expected_nat_rules(ports: Iterable[ServicePort]) -> int:
    """NAT rules kube-proxy's payload holds: 5 base + 3N+2 per service port with N>0
    endpoints (the shape ANCHORS.md states); for checking counts read from the kernel."""
    return 5 + sum(3 * len(p.endpoints) + 2 for p in ports if p.endpoints)
