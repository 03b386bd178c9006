"""kmesh_lab.manifests: the peers read a manifests directory the way the agent does."""

from __future__ import annotations

from pathlib import Path

from kmesh_lab import manifests

SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web, namespace: lab}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, protocol: TCP}]
"""
SLICE = """apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: lab
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.0.5], conditions: {ready: true}}]
"""


def test_services_slices_lists_and_refusals(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SERVICE + "---\n" + SLICE)
    (tmp_path / "b.yml").write_text(
        "kind: List\nitems:\n  - {apiVersion: v1, kind: Service, metadata: {name: bad}}\n"
    )
    (tmp_path / ".hidden.yaml").write_text("not: [read")
    (tmp_path / "notes.txt").write_text("ignored")
    read = manifests.read(tmp_path)
    assert [p.name for p in manifests.files(tmp_path)] == ["a.yaml", "b.yml"]
    [(spec, obj, lb)] = list(read.translated())
    assert spec.key == "lab/web" and obj["metadata"]["name"] == "web"
    assert {
        (fe.address, fe.port): [(e.address, e.port) for e in eps]
        for fe, eps in lb.frontends.items()
    } == {("10.96.0.20", 80): [("10.244.0.5", 8080)]}
    assert len(read.skipped) == 1 and read.skipped[0].startswith("b.yml: ")


def test_digest_follows_content_and_missing_directory_is_empty(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SERVICE)
    first = manifests.read(tmp_path).digest
    (tmp_path / "a.yaml").write_text(SERVICE.replace("10.96.0.20", "10.96.0.21"))
    assert manifests.read(tmp_path).digest != first
    absent = manifests.read(tmp_path / "absent")
    assert absent.services == {} and absent.skipped == []
