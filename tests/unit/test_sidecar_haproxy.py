"""The sidecar's routes (from manifests) and its HAProxy config and map, rendered."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kmesh_lab.sidecar import haproxy, routes


def service(name: str, ips: list[str], ports: list[dict]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "lab"},
        "spec": {"clusterIP": ips[0], "clusterIPs": ips, "ports": ports},
    }


def endpoint_slice(name: str, family: str, addresses: list[str], ports: list[dict]) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-{family.lower()}",
            "namespace": "lab",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": family,
        "ports": ports,
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }


HTTP = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
HTTP_EP = [{"name": "http", "port": 8080, "protocol": "TCP"}]


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    docs = [
        # Two endpoints, HTTP by port name.
        service("web", ["10.96.0.10"], HTTP),
        endpoint_slice("web", "IPv4", ["10.244.0.3", "10.244.0.4"], HTTP_EP),
        # No ready endpoint.
        service("empty", ["10.96.0.11"], HTTP),
        # Dual-stack, TCP by name, plus a UDP port that is not proxied.
        service(
            "db",
            ["10.96.0.12", "fd00:96::c"],
            [
                {"name": "pg", "port": 5432, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
        ),
        endpoint_slice(
            "db",
            "IPv4",
            ["10.244.0.5"],
            [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        ),
        endpoint_slice(
            "db",
            "IPv6",
            ["fd00:244::5"],
            [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        ),
        # appProtocol wins over the port name (Istio's protocol selection).
        service(
            "grpc",
            ["10.96.0.13"],
            [{"name": "tcp-api", "port": 9000, "protocol": "TCP", "appProtocol": "grpc"}],
        ),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
    ]
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump_all(docs))
    return tmp_path


def test_routes_from_manifests(manifests: Path) -> None:
    loaded = routes.load(manifests)
    by_key = {r.map_key: r for r in loaded.routes}
    assert sorted(by_key) == [
        "5432@10.96.0.12",
        "5432@fd00:96::c",
        "80@10.96.0.10",
        "80@10.96.0.11",
        "9000@10.96.0.13",
    ]
    web = by_key["80@10.96.0.10"]
    assert web.mode == "http" and web.backend == "outbound_80__web.lab"
    assert web.hostports == ("10.244.0.3:8080", "10.244.0.4:8080")
    assert by_key["80@10.96.0.11"].endpoints == ()
    db6 = by_key["5432@fd00:96::c"]
    assert db6.mode == "tcp" and db6.backend == "outbound_5432__db.lab_v6"
    assert db6.hostports == ("[fd00:244::5]:5432",)
    assert by_key["9000@10.96.0.13"].mode == "http"
    assert any("53/UDP: not TCP" in s for s in loaded.skipped)
    assert any("ConfigMap" in s for s in loaded.skipped)
    assert len(loaded.digest) == 64


def test_missing_directory_has_no_routes(tmp_path: Path) -> None:
    loaded = routes.load(tmp_path / "absent")
    assert loaded.routes == [] and loaded.skipped == []


def test_map_has_one_line_per_clusterip_port(manifests: Path) -> None:
    text = haproxy.render_map(routes.load(manifests).routes)
    entries = [ln.split() for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert entries == [
        ["5432@10.96.0.12", "outbound_5432__db.lab"],
        ["5432@fd00:96::c", "outbound_5432__db.lab_v6"],
        ["80@10.96.0.10", "outbound_80__web.lab"],
        ["80@10.96.0.11", "outbound_80__empty.lab"],
        ["9000@10.96.0.13", "outbound_9000__grpc.lab"],
    ]


def _config(manifests: Path, tmp_path: Path, **settings: object) -> str:
    return haproxy.render_config(
        "client-0",
        routes.load(manifests).routes,
        haproxy.Settings(**settings),  # type: ignore[arg-type]
        tmp_path / "client-0.sock",
        tmp_path / "routes.map",
    )


def _section(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(header)
    out = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        out.append(line.strip())
    return out


def test_config_sections(manifests: Path, tmp_path: Path) -> None:
    text = _config(manifests, tmp_path, threads=3, balance="roundrobin")
    assert "nbthread 3" in text
    outbound = _section(text, "frontend outbound")
    assert "bind 0.0.0.0:15001" in outbound
    assert any(f"map_str({tmp_path}/routes.map,PassthroughCluster)" in ln for ln in outbound)
    assert "default_backend PassthroughCluster" in outbound
    inbound = _section(text, "frontend inbound")
    # Only the HTTP ports' targets are spoken as HTTP inbound; the rest relays TCP.
    assert "use_backend InboundPassthroughHTTP if { dst_port 8080 }" in inbound
    assert "server app 0.0.0.0:0 source 127.0.0.6" in _section(
        text, "backend InboundPassthroughTCP"
    )
    assert _section(text, "backend PassthroughCluster") == [
        "mode tcp",
        "server original_dst 0.0.0.0:0",
    ]
    assert _section(text, "backend outbound_80__web.lab") == [
        "mode http",
        "http-reuse safe",
        "balance roundrobin",
        "server ep0 10.244.0.3:8080",
        "server ep1 10.244.0.4:8080",
    ]
    # No endpoint: a backend without servers (HAProxy answers 503, Envoy "no healthy upstream").
    assert _section(text, "backend outbound_80__empty.lab") == [
        "mode http",
        "http-reuse safe",
        "balance roundrobin",
    ]
    assert _section(text, "backend outbound_5432__db.lab_v6")[-1] == "server ep0 [fd00:244::5]:5432"
    assert f"stats socket {tmp_path}/client-0.sock" in text


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_config(manifests: Path, tmp_path: Path) -> None:
    (tmp_path / "routes.map").write_text(haproxy.render_map(routes.load(manifests).routes))
    cfg = tmp_path / "client-0.cfg"
    cfg.write_text(_config(manifests, tmp_path))
    proc = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_services_still_renders(tmp_path: Path) -> None:
    text = haproxy.render_config("p", [], haproxy.Settings(), tmp_path / "s", tmp_path / "m")
    assert "use_backend InboundPassthroughHTTP" not in text
    assert "backend outbound_" not in text


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"outbound_port": 0}, "outbound_port 0 is not a TCP port"),
        ({"inbound_port": 15001}, "three different ports"),
        ({"threads": 0}, "threads 0 must be a whole number"),
        ({"maxconn": True}, "maxconn True must be a whole number"),
        ({"balance": "source"}, "balance 'source': use one of leastconn"),
        ({"log_level": "loud"}, "log_level 'loud': use one of"),
        ({"timeout_idle": "5 minutes"}, "timeout_idle '5 minutes' is not an HAProxy time"),
    ],
)
def test_bad_settings_say_what_to_fix(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        haproxy.Settings(**settings)


def test_version_and_stats_parsing() -> None:
    out = "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: ..."
    assert haproxy.parse_version(out) == "2.6.12-1+deb12u4"
    with pytest.raises(ValueError, match="no 'HAProxy version X' line"):
        haproxy.parse_version("bash: haproxy: command not found")
    csv = (
        "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,x,hrsp_5xx\n"
        "outbound,FRONTEND,,,1,2,100,7,10,20,,\n"
        "outbound_80__web.lab,ep0,0,0,0,1,,5,1,2,,3\n"
    )
    parsed = haproxy.parse_stat(csv)
    assert parsed["outbound"]["FRONTEND"]["stot"] == 7
    assert parsed["outbound"]["FRONTEND"]["scur"] == 1
    assert parsed["outbound_80__web.lab"]["ep0"] == {
        "stot": 5,
        "scur": 0,
        "bin": 1,
        "bout": 2,
        "hrsp_5xx": 3,
    }
    with pytest.raises(ValueError, match="not `show stat` output"):
        haproxy.parse_stat("Unknown command")
