"""Service manifests for the agent's watched directory, read back through the agent's own
translation path (kmesh_node.translate), so both sides agree on the format."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kmesh_lab import services


def test_vips_are_distinct_and_inside_the_service_cidr() -> None:
    vips = {services.vip(i) for i in range(10_000)}
    assert len(vips) == 10_000
    assert services.vip(0) == "10.96.0.10"
    with pytest.raises(ValueError, match="larger CIDR"):
        services.vip(1 << 20)


def test_endpoints_rotate_over_servers_and_are_capped() -> None:
    docs, listing = services.manifests(0, 4, ["10.244.0.3", "10.244.0.4"], 3, 80)
    assert len(docs) == 8
    assert [s["endpoints"] for s in listing] == [
        ["10.244.0.3", "10.244.0.4"],
        ["10.244.0.4", "10.244.0.3"],
        ["10.244.0.3", "10.244.0.4"],
        ["10.244.0.4", "10.244.0.3"],
    ]
    slice_ = docs[1]
    assert slice_["kind"] == "EndpointSlice"
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == listing[0]["name"]


def test_no_servers_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="netns_lab_pods"):
        services.manifests(0, 1, [], 1, 80)


def test_written_file_translates_to_the_same_services(tmp_path: Path) -> None:
    from kmesh_node.model import Frontend, LbPolicy

    docs, listing = services.manifests(5, 3, ["10.244.0.3"], 1, 8080)
    path = services.write(tmp_path, "batch", docs)
    assert path.name == "batch.yaml" and not list(tmp_path.glob(".*"))
    loaded = list(yaml.safe_load_all(path.read_text()))
    assert loaded == docs

    from kmesh_node import translate

    for entry, svc_doc, slice_doc in zip(listing, loaded[0::2], loaded[1::2], strict=True):
        svc = translate.translate(
            translate.parse_service(svc_doc), [translate.parse_slice(slice_doc)], LbPolicy.RANDOM
        )
        assert svc.key == f"{entry['namespace']}/{entry['name']}"
        eps = svc.frontends[Frontend(entry["vip"], 8080)]
        assert [e.address for e in eps] == entry["endpoints"]
        assert {e.port for e in eps} == {80}
