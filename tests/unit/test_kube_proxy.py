"""Golden tests: the rendered rules against kube-proxy's own test expectations.

The golden files (tests/unit/data/kube_proxy/, see its README) are copied verbatim from
kubernetes pkg/proxy/{iptables,nftables}/proxier_test.go. The same services are rendered
here (ClusterIP part only); lines for features the lab does not render are dropped from the
golden text by a visible filter, and the rest must match exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kmesh_lab import kube_proxy as kp
from kmesh_lab import kube_proxy_apply, services

DATA = Path(__file__).with_name("data") / "kube_proxy"
# kube-proxy's fake proxier: pod CIDR 10.0.0.0/8, services 172.30.0.0/16, node 192.168.0.2,
# no --random-fully in the fake iptables, nfacct counters present, localhost NodePorts on.
IPT_CFG = kp.Config(cluster_cidr="10.0.0.0/8", random_fully=False, nfacct=True)
NFT_CFG = kp.Config(
    cluster_cidr="10.0.0.0/8", service_cidrs=("172.30.0.0/16",), node_port_ips=("192.168.0.2",)
)


def sp(ns: str, name: str, ip: str, *eps: str, port_name: str = "p80") -> kp.ServicePort:
    endpoints = tuple((e.split(":")[0], int(e.split(":")[1])) for e in eps)
    return kp.ServicePort(ns, name, port_name, ip, 80, "tcp", endpoints)


# TestOverall*Rules' services, ClusterIP part: svc1 (1 endpoint), svc3 (1), svc4 (2),
# svc6 (none). svc2 and svc5 exercise only LoadBalancer/Local/affinity features.
OVERALL = [
    sp("ns1", "svc1", "172.30.0.41", "10.180.0.1:80"),
    sp("ns3", "svc3", "172.30.0.43", "10.180.0.3:80"),
    sp("ns4", "svc4", "172.30.0.44", "10.180.0.4:80", "10.180.0.5:80"),
    sp("ns6", "svc6", "172.30.0.46"),
]
NOT_RENDERED_IPT = (
    "ns2/svc2",
    "ns5/svc5",
    "GNZBNJ2PO5MGZ6GT",  # svc2's chains
    "RS4RBKLTHTF2IUXJ",
    "NUKIZ6OKUXPJNT4C",  # svc5's chains
    "I77PXRDZVX7PMWMN",
    "KUBE-EXT-",  # external destinations (NodePort, external IP, LB)
    "KUBE-FW-",  # loadBalancerSourceRanges
    "-A KUBE-NODEPORTS ",  # NodePorts
)
NOT_RENDERED_NFT = ("external-", "add element ip kube-proxy service-nodeports ", "192.168.99.")


def _golden(name: str, dropped: tuple[str, ...]) -> list[str]:
    lines = (DATA / name).read_text().splitlines()
    return [line for line in lines if not any(d in line for d in dropped)]


def test_chain_hashes_are_kube_proxys() -> None:
    # Names that appear in kube-proxy's proxier_test.go expectations.
    assert kp.svc_chain(OVERALL[0]) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert kp.sep_chain(OVERALL[0], "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert kp.sep_chain(OVERALL[0], "10.180.2.1:80") == "KUBE-SEP-ZX7GRIZKSNUQ3LAJ"
    svc2 = sp("ns2", "svc2", "172.30.0.42", port_name="p8080")
    assert kp.svc_chain(svc2) == "KUBE-SVC-2VJB64SDSIJUP5T6"
    assert kp.sep_chain(svc2, "10.0.2.1:8080") == "KUBE-SEP-UHEGFW77JX3KXTOV"
    unnamed = sp("ns1", "svc1", "172.30.1.1", port_name="")
    assert unnamed.port_name_string == "ns1/svc1"
    assert kp.svc_chain(unnamed) == "KUBE-SVC-AQI2S6QIMU7PVVRP"
    assert kp.nft_service_chain(OVERALL[0]) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert (
        kp.nft_endpoint_chain(OVERALL[0], "10.180.0.1", 80)
        == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    )


def test_probability_formatting() -> None:
    assert [kp.probability(n) for n in (4, 3, 2)] == [
        "0.2500000000",
        "0.3333333333",
        "0.5000000000",
    ]


def test_iptables_matches_test_overall_iptables_rules() -> None:
    expected = _golden("overall_iptables.txt", NOT_RENDERED_IPT)
    assert kp.render_iptables(OVERALL, IPT_CFG).splitlines() == expected


def test_iptables_three_endpoints_match_internal_traffic_policy_cluster_case() -> None:
    # TestInternalTrafficPolicy, "internalTrafficPolicy is cluster": unnamed port.
    golden = """\
-A KUBE-SEP-3JOIVZTXZZRGORX4 -m comment --comment ns1/svc1 -s 10.0.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-3JOIVZTXZZRGORX4 -m comment --comment ns1/svc1 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
-A KUBE-SEP-IO5XOSKPAXIFQXAJ -m comment --comment ns1/svc1 -s 10.0.1.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-IO5XOSKPAXIFQXAJ -m comment --comment ns1/svc1 -m tcp -p tcp -j DNAT --to-destination 10.0.1.2:80
-A KUBE-SEP-XGJFVO3L2O5SRFNT -m comment --comment ns1/svc1 -s 10.0.1.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-XGJFVO3L2O5SRFNT -m comment --comment ns1/svc1 -m tcp -p tcp -j DNAT --to-destination 10.0.1.3:80
-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 cluster IP" -m tcp -p tcp -d 172.30.1.1 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 -> 10.0.1.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-3JOIVZTXZZRGORX4
-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 -> 10.0.1.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-IO5XOSKPAXIFQXAJ
-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 -> 10.0.1.3:80" -j KUBE-SEP-XGJFVO3L2O5SRFNT
"""  # noqa: E501
    svc = sp("ns1", "svc1", "172.30.1.1", "10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:80", port_name="")
    rendered = kp.render_iptables([svc], IPT_CFG).splitlines()
    per_service = [line for line in rendered if line.startswith(("-A KUBE-SVC-", "-A KUBE-SEP-"))]
    assert per_service == golden.splitlines()


def test_iptables_large_cluster_mode_drops_endpoint_comments() -> None:
    eps = [f"10.1.{i // 250}.{i % 250 + 1}:80" for i in range(1001)]
    rendered = kp.render_iptables([sp("ns1", "big", "172.30.0.9", *eps)], IPT_CFG)
    sep = [line for line in rendered.splitlines() if line.startswith("-A KUBE-SEP-")]
    assert len(sep) == 2002 and not any("--comment" in line for line in sep)
    assert '--comment "ns1/big:p80 cluster IP"' in rendered  # service rules keep theirs


def test_iptables_default_masquerade_is_random_fully() -> None:
    rendered = kp.render_iptables(OVERALL, kp.Config(cluster_cidr="10.0.0.0/8"))
    assert "-j MASQUERADE --random-fully" in rendered
    assert "--nfacct-name" not in rendered


def _nft_sorted(lines: list[str]) -> list[str]:
    """kube-proxy's sortNFTablesTransaction: by object type, then object name; rules keep
    their order within a chain; blank lines and comments ignored."""
    order = {"table": 0, "chain": 1, "set": 2, "map": 3, "element": 4, "rule": 5}
    kept = [line for line in lines if line.strip() and not line.startswith("#")]

    def key(line: str) -> tuple[int, str, str]:
        words = line.split()
        return order[words[1]], words[4], "" if words[1] == "rule" else line

    return sorted(kept, key=key)


def test_nftables_matches_test_overall_nftables_rules() -> None:
    golden = _golden("overall_nftables.txt", NOT_RENDERED_NFT)
    # Only svc3's and svc4's external chain (1 chain + 2 rules each), svc3's NodePort and
    # svc4's external IP element are dropped: 8 of the file's 102 lines.
    assert len((DATA / "overall_nftables.txt").read_text().splitlines()) - len(golden) == 8
    expected = _nft_sorted(golden)
    rendered = kp.render_nftables(OVERALL, NFT_CFG).splitlines()
    assert _nft_sorted(rendered) == expected
    # ... and in an order `nft -f` accepts: every chain exists before a rule names it.
    first_rule = next(i for i, line in enumerate(rendered) if line.startswith("add rule "))
    assert all(not line.startswith("add chain ") for line in rendered[first_rule:])


def test_apply_input_rewrites_ours_deletes_stale_and_adds_only_missing_jumps() -> None:
    save = """\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-OLDOLDOLDOLDOLD1 - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -j DOCKER
COMMIT
"""
    tables = kp.iptables_tables(OVERALL, IPT_CFG)
    text = kp.apply_input(tables, save)
    nat = text[text.index("*nat") :]
    assert ":KUBE-SVC-OLDOLDOLDOLDOLD1 - [0:0]" in nat and "-X KUBE-SVC-OLDOLDOLDOLDOLD1" in nat
    assert "DOCKER" not in text  # other chains are left alone (--noflush)
    inserted = [line for line in nat.splitlines() if line.startswith("-I ")]
    assert inserted == [
        '-I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    ]
    # Everything kube-proxy's payload has is still there.
    for line in kp.render_iptables(OVERALL, IPT_CFG).splitlines():
        assert line in text


def test_removal_input_deletes_jumps_then_chains() -> None:
    save = """\
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -j ACCEPT
-A KUBE-SERVICES -j KUBE-SVC-XPGD46QRK7WJZT7O
COMMIT
"""
    assert kp.removal_input(save).splitlines() == [
        "*nat",
        ":KUBE-SERVICES - [0:0]",
        ":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]",
        '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-X KUBE-SERVICES",
        "-X KUBE-SVC-XPGD46QRK7WJZT7O",
        "COMMIT",
    ]
    assert kp.removal_input("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n") == ""


def test_expected_nat_rules_is_3n_plus_2_per_service_plus_5() -> None:
    assert kp.expected_nat_rules(OVERALL) == 5 + 5 + 5 + 8  # svc6 has no nat rules
    nat = kp.iptables_tables(OVERALL, IPT_CFG)[1]
    assert len(nat.rules) == kp.expected_nat_rules(OVERALL)


def test_load_manifests_uses_the_agents_translation(tmp_path: Path) -> None:
    docs, _ = services.manifests(0, 3, ["10.244.0.3", "10.244.0.4"], 2, 80)
    services.write(tmp_path, "base", docs)
    broken = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(broken))
    (tmp_path / ".editor.yaml").write_text("not: [valid")
    loaded = kube_proxy_apply.load_manifests(tmp_path)
    assert [p.port_name_string for p in loaded.ports] == [
        "lab/svc-00000:http",
        "lab/svc-00001:http",
        "lab/svc-00002:http",
    ]
    assert loaded.ports[0].endpoints == (("10.244.0.3", 80), ("10.244.0.4", 80))
    assert loaded.ports[0].cluster_ip == services.vip(0) and loaded.ports[0].protocol == "tcp"
    assert len(loaded.skipped) == 1 and "bad.yaml" in loaded.skipped[0]
    assert kube_proxy_apply.load_manifests(tmp_path / "missing").ports == []


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_bad_mode_is_refused_with_the_choices(mode: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend one of"):
        kube_proxy_apply.apply("ns", mode, "bogus", [], IPT_CFG, tmp_path)
