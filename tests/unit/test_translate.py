"""The one translation path: raw Service + EndpointSlice dicts -> LbService values."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kmesh_node.model import (
    LB_POLICY_ANNOTATION,
    Endpoint,
    Frontend,
    L4Proto,
    LbPolicy,
    LbService,
)
from kmesh_node.translate import (
    MAX_ENDPOINTS_PER_SLICE,
    Ignored,
    InvalidObject,
    ObjectId,
    ServiceSpec,
    SliceSpec,
    object_id,
    parse_object,
    translate,
)


def svc(
    name: str = "web",
    ips: list[str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    ns: str = "shop",
    **spec_extra: Any,
) -> dict[str, Any]:
    ips = ips or ["10.96.0.10"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "clusterIP": ips[0],
            "clusterIPs": ips,
            "ports": ports if ports is not None else [{"port": 80, "targetPort": 8080}],
            **spec_extra,
        },
    }


def eps(
    name: str = "web-abc",
    service: str = "web",
    endpoints: list[dict[str, Any]] | None = None,
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
    ns: str = "shop",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": address_type,
        "endpoints": endpoints
        if endpoints is not None
        else [{"addresses": ["10.0.1.2"]}, {"addresses": ["10.0.1.1"]}],
        "ports": ports if ports is not None else [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


def run(service: dict[str, Any], *slices: dict[str, Any], default=LbPolicy.RANDOM) -> LbService:
    spec = parse_object(service)
    assert isinstance(spec, ServiceSpec)
    slice_specs = [parse_object(s) for s in slices]
    assert all(isinstance(s, SliceSpec) for s in slice_specs)
    return translate(spec, slice_specs, default)  # type: ignore[arg-type]


def invalid_reason(obj: Any) -> str:
    with pytest.raises(InvalidObject) as info:
        parse_object(obj)
    return info.value.reason


# --- the happy path --------------------------------------------------------------------


def test_service_with_one_slice_maps_frontend_to_sorted_ready_endpoints() -> None:
    lb = run(svc(), eps())
    assert lb == LbService(
        key="shop/web",
        policy=LbPolicy.RANDOM,
        frontends={
            Frontend("10.96.0.10", 80, L4Proto.TCP): (
                Endpoint("10.0.1.1", 8080),
                Endpoint("10.0.1.2", 8080),
            )
        },
    )
    assert lb.endpoint_count() == 2


def test_only_ready_endpoints_count_and_absent_ready_means_ready() -> None:
    slice_ = eps(
        endpoints=[
            {"addresses": ["10.0.1.1"]},  # no conditions: ready
            {"addresses": ["10.0.1.2"], "conditions": {"ready": True}},
            {"addresses": ["10.0.1.3"], "conditions": {"ready": False, "serving": True}},
            {"addresses": ["10.0.1.4"], "conditions": {"serving": True}},  # ready absent
        ]
    )
    lb = run(svc(), slice_)
    addrs = [e.address for e in lb.frontends[Frontend("10.96.0.10", 80)]]
    assert addrs == ["10.0.1.1", "10.0.1.2", "10.0.1.4"]


def test_only_first_address_of_an_endpoint_is_used() -> None:
    lb = run(svc(), eps(endpoints=[{"addresses": ["10.0.1.5", "10.0.1.6"]}]))
    assert lb.frontends[Frontend("10.96.0.10", 80)] == (Endpoint("10.0.1.5", 8080),)


def test_endpoints_from_several_slices_are_merged_and_deduplicated() -> None:
    a = eps("web-a", endpoints=[{"addresses": ["10.0.1.1"]}, {"addresses": ["10.0.1.2"]}])
    b = eps("web-b", endpoints=[{"addresses": ["10.0.1.2"]}, {"addresses": ["10.0.1.3"]}])
    lb = run(svc(), a, b)
    assert [e.address for e in lb.frontends[Frontend("10.96.0.10", 80)]] == [
        "10.0.1.1",
        "10.0.1.2",
        "10.0.1.3",
    ]


def test_service_without_slices_has_frontends_with_no_endpoints() -> None:
    lb = run(svc())
    assert lb.frontends == {Frontend("10.96.0.10", 80): ()}
    assert lb.endpoint_count() == 0


def test_slice_port_is_matched_by_service_port_name_like_kube_proxy() -> None:
    # The EndpointSlice controller resolved targetPort already: the slice port named like
    # the service port carries the real number, even when targetPort says otherwise.
    service = svc(
        ports=[
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "metrics", "port": 9100, "targetPort": 9100},
        ]
    )
    slice_ = eps(
        ports=[
            {"name": "http", "port": 8081, "protocol": "TCP"},
            {"name": "metrics", "port": 9101, "protocol": "TCP"},
        ]
    )
    lb = run(service, slice_)
    assert lb.frontends[Frontend("10.96.0.10", 80)][0].port == 8081
    assert lb.frontends[Frontend("10.96.0.10", 9100)][0].port == 9101


def test_named_target_port_resolves_through_the_slice_port_of_that_name() -> None:
    service = svc(ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    slice_ = eps(ports=[{"name": "web", "port": 8088, "protocol": "TCP"}])
    lb = run(service, slice_)
    assert {e.port for e in lb.frontends[Frontend("10.96.0.10", 80)]} == {8088}


def test_named_target_port_missing_from_slice_gives_no_endpoints() -> None:
    service = svc(ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    slice_ = eps(ports=[{"name": "other", "port": 8088, "protocol": "TCP"}])
    assert run(service, slice_).frontends[Frontend("10.96.0.10", 80)] == ()


def test_numbered_target_port_used_when_slice_lists_no_ports() -> None:
    service = svc(ports=[{"name": "http", "port": 80, "targetPort": 8080}])
    lb = run(service, eps(ports=[]))
    assert {e.port for e in lb.frontends[Frontend("10.96.0.10", 80)]} == {8080}


def test_numbered_target_port_matches_slice_port_by_number_when_names_differ() -> None:
    service = svc(ports=[{"name": "http", "port": 80, "targetPort": 8080}])
    slice_ = eps(ports=[{"name": "x", "port": 8080, "protocol": "TCP"}])
    assert {e.port for e in run(service, slice_).frontends[Frontend("10.96.0.10", 80)]} == {8080}
    slice_ = eps(ports=[{"name": "x", "port": 9999, "protocol": "TCP"}])
    assert run(service, slice_).frontends[Frontend("10.96.0.10", 80)] == ()


def test_target_port_defaults_to_port_and_quoted_number_is_a_number() -> None:
    lb = run(svc(ports=[{"port": 5000}]), eps(ports=[]))
    assert lb.frontends[Frontend("10.96.0.10", 5000)][0].port == 5000
    lb = run(svc(ports=[{"port": 80, "targetPort": "8443"}]), eps(ports=[]))
    assert lb.frontends[Frontend("10.96.0.10", 80)][0].port == 8443


def test_udp_and_tcp_ports_are_separate_frontends_with_protocol_matching() -> None:
    service = svc(
        ports=[
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ]
    )
    slice_ = eps(
        ports=[
            {"name": "dns", "port": 5353, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 5354, "protocol": "TCP"},
        ]
    )
    lb = run(service, slice_)
    assert lb.frontends[Frontend("10.96.0.10", 53, L4Proto.UDP)][0].port == 5353
    assert lb.frontends[Frontend("10.96.0.10", 53, L4Proto.TCP)][0].port == 5354


def test_dual_stack_service_gets_one_frontend_per_family_fed_by_that_family() -> None:
    service = svc(ips=["10.96.0.10", "fd00:10:96::000a"])
    v4 = eps("web-v4")
    v6 = eps(
        "web-v6",
        address_type="IPv6",
        endpoints=[{"addresses": ["fd00:0:0:1::2"]}, {"addresses": ["fd00::1:0:0:0:1"]}],
    )
    lb = run(service, v4, v6)
    assert set(lb.frontends) == {Frontend("10.96.0.10", 80), Frontend("fd00:10:96::a", 80)}
    assert [e.address for e in lb.frontends[Frontend("fd00:10:96::a", 80)]] == [
        "fd00:0:0:1::1",
        "fd00:0:0:1::2",
    ]
    assert [e.address for e in lb.frontends[Frontend("10.96.0.10", 80)]] == [
        "10.0.1.1",
        "10.0.1.2",
    ]


def test_single_cluster_ip_without_cluster_ips_list() -> None:
    service = svc()
    del service["spec"]["clusterIPs"]
    assert set(run(service, eps()).frontends) == {Frontend("10.96.0.10", 80)}


def test_missing_namespace_means_default() -> None:
    service = svc()
    del service["metadata"]["namespace"]
    spec = parse_object(service)
    assert isinstance(spec, ServiceSpec) and spec.key == "default/web"
    slice_ = eps()
    del slice_["metadata"]["namespace"]
    sspec = parse_object(slice_)
    assert isinstance(sspec, SliceSpec) and sspec.service_key == "default/web"


def test_policy_comes_from_annotation_else_default() -> None:
    assert run(svc(), default=LbPolicy.ROUND_ROBIN).policy is LbPolicy.ROUND_ROBIN
    annotated = svc()
    annotated["metadata"]["annotations"] = {LB_POLICY_ANNOTATION: "round_robin"}
    assert run(annotated, default=LbPolicy.RANDOM).policy is LbPolicy.ROUND_ROBIN
    annotated["metadata"]["annotations"] = {LB_POLICY_ANNOTATION: "random"}
    assert run(annotated, default=LbPolicy.ROUND_ROBIN).policy is LbPolicy.RANDOM


def test_unknown_policy_falls_back_to_default_with_a_warning() -> None:
    annotated = svc()
    annotated["metadata"]["annotations"] = {LB_POLICY_ANNOTATION: "weighted"}
    spec = parse_object(annotated)
    assert isinstance(spec, ServiceSpec)
    assert spec.policy is None
    assert len(spec.warnings) == 1 and "'weighted'" in spec.warnings[0]
    assert "round_robin" in spec.warnings[0]
    assert translate(spec, [], LbPolicy.ROUND_ROBIN).policy is LbPolicy.ROUND_ROBIN


def test_sctp_port_is_skipped_with_a_warning_and_other_ports_served() -> None:
    service = svc(
        ports=[
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "sig", "port": 3868, "protocol": "SCTP"},
        ]
    )
    spec = parse_object(service)
    assert isinstance(spec, ServiceSpec)
    assert [p.port for p in spec.ports] == [80]
    assert len(spec.warnings) == 1 and "SCTP" in spec.warnings[0]


def test_type_nodeport_and_loadbalancer_still_serve_their_cluster_ip() -> None:
    lb = run(svc(type="LoadBalancer"), eps())
    assert Frontend("10.96.0.10", 80) in lb.frontends


def test_translation_does_not_mutate_its_input() -> None:
    service, slice_ = svc(), eps()
    before = copy.deepcopy((service, slice_))
    run(service, slice_)
    assert (service, slice_) == before


# --- ignored with a reason -------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "word"),
    [
        (svc(ips=["None"]), "headless"),
        (
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ext", "namespace": "shop"},
                "spec": {"type": "ExternalName", "externalName": "example.org"},
            },
            "ExternalName",
        ),
        (eps(address_type="FQDN", endpoints=[{"addresses": ["a.example.org"]}]), "FQDN"),
    ],
)
def test_objects_with_nothing_to_balance_are_ignored_with_reason(obj: Any, word: str) -> None:
    result = parse_object(obj)
    assert isinstance(result, Ignored)
    assert word in result.reason
    assert result.oid == object_id(obj)


def test_slice_without_service_name_label_is_ignored() -> None:
    slice_ = eps()
    slice_["metadata"]["labels"] = {"app": "web"}
    result = parse_object(slice_)
    assert isinstance(result, Ignored)
    assert "kubernetes.io/service-name" in result.reason


# --- rejected with what is wrong and what to do ---------------------------------------


def _with_spec(**changes: Any) -> dict[str, Any]:
    obj = svc()
    obj["spec"].update(changes)
    return obj


@pytest.mark.parametrize(
    ("obj", "must_say"),
    [
        (_with_spec(clusterIP="10.96.0.300", clusterIPs=["10.96.0.300"]), "10.96.0.300"),
        (_with_spec(clusterIP="", clusterIPs=[]), "set spec.clusterIP"),
        (_with_spec(clusterIP="10.96.0.1", clusterIPs=["10.96.0.2"]), "make them equal"),
        (_with_spec(clusterIPs=["10.96.0.10", "10.96.0.11"]), "one IPv4 and one IPv6"),
        (_with_spec(ports=[{"port": 0}]), "1-65535"),
        (_with_spec(ports=[{"port": 65536}]), "65536"),
        (_with_spec(ports=[{"port": "80"}]), "integer"),
        (_with_spec(ports=[{"port": True}]), "integer"),
        (_with_spec(ports=[{"port": 80, "targetPort": 0}]), "targetPort"),
        (_with_spec(ports=[{"port": 80, "targetPort": 70000}]), "targetPort"),
        (_with_spec(ports=[]), "at least one port"),
        (_with_spec(ports=[{"port": 80, "protocol": "ICMP"}]), "TCP, UDP"),
        (
            _with_spec(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
            "listed twice",
        ),
        (_with_spec(ports=[{"name": "a", "port": 80}, {"port": 81}]), "needs one"),
        (
            _with_spec(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]),
            "unique",
        ),
        ({**svc(), "spec": None}, "spec"),
        ({**svc(), "metadata": {"namespace": "shop"}}, "metadata.name"),
        ({**svc(), "kind": "Deployment"}, "unsupported kind"),
        ({**svc(), "apiVersion": "v2"}, "unsupported kind"),
        ({**eps(), "apiVersion": "discovery.k8s.io/v1beta1"}, "unsupported kind"),
        (["not", "a", "mapping"], "mapping"),
        ("just text", "mapping"),
        (eps(endpoints=[{"addresses": ["10.0.1.999"]}]), "10.0.1.999"),
        (eps(endpoints=[{"addresses": ["fd00::1"]}]), "addressType"),
        (eps(endpoints=[{"addresses": []}]), "addresses"),
        (eps(endpoints=[{"hostname": "x"}]), "addresses"),
        (eps(ports=[{"name": "", "port": 0}]), "1-65535"),
        (eps(ports=[{"name": "", "port": 99999}]), "99999"),
        (eps(address_type="IPv5"), "addressType"),
        (
            eps(endpoints=[{"addresses": [f"10.1.{i // 250}.{i % 250}"]} for i in range(1001)]),
            "at most 1000",
        ),
    ],
)
def test_invalid_objects_are_refused_with_a_useful_reason(obj: Any, must_say: str) -> None:
    reason = invalid_reason(obj)
    assert must_say in reason
    # Every reason says what to do, not only what is wrong.
    assert any(w in reason for w in ("; ", "use ", "set ", "give", "list", "write")), reason


def test_slice_at_the_endpoint_cap_is_accepted() -> None:
    big = eps(
        endpoints=[
            {"addresses": [f"10.1.{i // 250}.{i % 250}"]} for i in range(MAX_ENDPOINTS_PER_SLICE)
        ]
    )
    spec = parse_object(big)
    assert isinstance(spec, SliceSpec) and len(spec.ready) == MAX_ENDPOINTS_PER_SLICE


def test_slice_port_without_number_is_skipped_with_a_warning() -> None:
    spec = parse_object(eps(ports=[{"name": "all"}, {"name": "", "port": 8080}]))
    assert isinstance(spec, SliceSpec)
    assert [p.port for p in spec.ports] == [8080]
    assert spec.warnings and "no port number" in spec.warnings[0]


def test_object_id_of_broken_objects() -> None:
    assert object_id(svc()) == ObjectId("Service", "shop/web")
    assert str(object_id(svc())) == "Service shop/web"
    assert object_id({"kind": "Service", "metadata": {}}) is None
    assert object_id([1, 2]) is None
    assert object_id({"kind": "Service", "metadata": {"name": "x"}}) == ObjectId(
        "Service", "default/x"
    )


def test_same_input_same_output() -> None:
    # Stable order: the datapath must not churn on a re-listing of identical objects.
    a = run(svc(), eps("s1"), eps("s2", endpoints=[{"addresses": ["10.0.0.9"]}]))
    b = run(svc(), eps("s2", endpoints=[{"addresses": ["10.0.0.9"]}]), eps("s1"))
    assert a == b
