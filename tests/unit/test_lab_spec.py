"""Lab layout from inventory numbers: validation messages and addressing."""

from __future__ import annotations

import pytest

from kmesh_lab import lab, netns


def test_spec_places_clients_then_servers_after_the_gateway() -> None:
    spec = lab.build_spec("kmlab", "10.244.0.0/24", 2, 3, 500, 0)
    assert [p.name for p in spec.pods] == [
        "client-0",
        "client-1",
        "server-0",
        "server-1",
        "server-2",
    ]
    assert [p.address for p in spec.pods] == [f"10.244.0.{i}" for i in range(2, 7)]
    assert netns.gateway(spec.pod_cidr) == "10.244.0.1"
    assert {p.cpu_m for p in spec.pods if p.role == "client"} == {500}
    assert spec.pod_ns("server-0") == "kmlab-server-0"
    assert spec.cgroup("server-0") == "kmlab/server-0"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"servers": -1}, "netns_lab_pods"),
        ({"servers": 0}, "netns_lab_pods"),
        ({"clients": 0}, "netns_lab_clients"),
        ({"client_cpu_m": "abc"}, "netns_lab_client_cpu_m"),
        ({"server_cpu_m": -5}, "netns_lab_server_cpu_m"),
    ],
)
def test_bad_numbers_name_the_variable(kwargs: dict, name: str) -> None:
    args = {"clients": 1, "servers": 1, "client_cpu_m": 0, "server_cpu_m": 0} | kwargs
    with pytest.raises(ValueError, match=name):
        lab.build_spec("kmlab", "10.244.0.0/24", **args)


def test_cidr_too_small_says_so() -> None:
    with pytest.raises(ValueError, match="netns_lab_pod_cidr"):
        lab.build_spec("kmlab", "10.244.0.0/30", 2, 2, 0, 0)


def test_interface_names_fit_the_kernel_limit() -> None:
    assert netns.host_ifname("v-", "server-12") == "v-server-12"
    with pytest.raises(ValueError, match="15"):
        netns.host_ifname("v-", "a-very-long-pod-name")
