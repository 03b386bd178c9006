"""ServiceStore: the join of services and slices, duplicate frontends, resync."""

from __future__ import annotations

from typing import Any

from kmesh_node.model import Endpoint, Frontend, LbPolicy
from kmesh_node.sources.store import ServiceStore
from kmesh_node.translate import ServiceSpec, SliceSpec, parse_object
from tests import fakes


def s(name: str, ip: str, **kw: Any) -> ServiceSpec:
    spec = parse_object(fakes.service(name, ip, **kw))
    assert isinstance(spec, ServiceSpec)
    return spec


def sl(name: str, service: str, addrs: list[str], **kw: Any) -> SliceSpec:
    spec = parse_object(fakes.endpoint_slice(name, service, addrs, **kw))
    assert isinstance(spec, SliceSpec)
    return spec


def make() -> tuple[ServiceStore, Any]:
    sink = fakes.RecordingSink()
    return ServiceStore(sink, LbPolicy.RANDOM), sink


def ops(sink: Any) -> list[tuple[str, str]]:
    out = []
    for name, arg in sink.calls:
        if name == "upsert":
            out.append(("upsert", arg.key))
        elif name == "rejected":
            out.append(("rejected", arg.obj))
        else:
            out.append((name, arg or ""))
    return out


def test_nothing_reaches_the_sink_before_flush_and_slices_join_by_label() -> None:
    store, sink = make()
    store.put_service(s("a", "10.96.0.1"), "f.yaml")
    store.put_slice(sl("a-1", "a", ["10.0.0.1"]))
    store.put_slice(sl("b-1", "b", ["10.0.0.2"]))  # no service b yet
    assert sink.calls == []
    store.flush()
    assert ops(sink) == [("upsert", "default/a")]
    assert sink.services["default/a"].frontends == {
        Frontend("10.96.0.1", 80): (Endpoint("10.0.0.1", 8080),)
    }
    store.put_service(s("b", "10.96.0.2"), "f.yaml")
    store.flush()
    assert sink.services["default/b"].endpoint_count() == 1


def test_unchanged_objects_cause_no_sink_call() -> None:
    store, sink = make()
    assert store.put_service(s("a", "10.96.0.1"), "f")
    assert store.put_slice(sl("a-1", "a", ["10.0.0.1"]))
    store.flush()
    sink.reset_calls()
    assert not store.put_service(s("a", "10.96.0.1"), "f")
    assert not store.put_slice(sl("a-1", "a", ["10.0.0.1"]))
    store.flush()
    assert sink.calls == []


def test_slice_update_and_delete_touch_only_their_service() -> None:
    store, sink = make()
    for name, ip in (("a", "10.96.0.1"), ("b", "10.96.0.2")):
        store.put_service(s(name, ip), "f")
        store.put_slice(sl(f"{name}-1", name, ["10.0.0.1"]))
    store.flush()
    sink.reset_calls()
    store.put_slice(sl("a-1", "a", ["10.0.0.1", "10.0.0.3"]))
    store.flush()
    assert ops(sink) == [("upsert", "default/a")]
    assert sink.services["default/a"].endpoint_count() == 2
    sink.reset_calls()
    store.remove_slice("default/a-1")
    store.flush()
    assert ops(sink) == [("upsert", "default/a")]
    assert sink.services["default/a"].endpoint_count() == 0
    assert sink.services["default/b"].endpoint_count() == 1


def test_slice_moving_to_another_service_updates_both() -> None:
    store, sink = make()
    store.put_service(s("a", "10.96.0.1"), "f")
    store.put_service(s("b", "10.96.0.2"), "f")
    store.put_slice(sl("x", "a", ["10.0.0.1"]))
    store.flush()
    store.put_slice(sl("x", "b", ["10.0.0.1"]))
    store.flush()
    assert sink.services["default/a"].endpoint_count() == 0
    assert sink.services["default/b"].endpoint_count() == 1


def test_deleting_a_service_deletes_it_once() -> None:
    store, sink = make()
    store.put_service(s("a", "10.96.0.1"), "f")
    store.flush()
    store.remove_service("default/a")
    store.remove_service("default/a")
    store.flush()
    assert ops(sink)[-1] == ("delete", "default/a")
    assert [c for c in sink.calls if c[0] == "delete"] == [("delete", "default/a")]
    assert sink.services == {}


def test_duplicate_cluster_ip_port_first_keeps_it_second_waits_for_it() -> None:
    store, sink = make()
    store.put_service(s("first", "10.96.0.1"), "one.yaml")
    store.put_slice(sl("first-1", "first", ["10.0.0.1"]))
    store.flush()
    # Same ClusterIP:80 plus its own :81 port.
    second = s(
        "second",
        "10.96.0.1",
        ports=[{"name": "a", "port": 80, "targetPort": 8080}, {"name": "b", "port": 81}],
    )
    store.put_service(second, "two.yaml")
    store.put_slice(sl("second-1", "second", ["10.0.0.2"], ports=[]))
    store.flush()
    # First keeps :80 with its endpoint; second serves only :81.
    assert sink.services["default/first"].frontends[Frontend("10.96.0.1", 80)] == (
        Endpoint("10.0.0.1", 8080),
    )
    assert set(sink.services["default/second"].frontends) == {Frontend("10.96.0.1", 81)}
    [rej] = sink.rejections
    assert rej.where == "two.yaml" and rej.obj == "Service default/second"
    assert "10.96.0.1:80/TCP" in rej.reason and "default/first" in rej.reason
    # A slice change of the second service does not repeat the rejection.
    store.put_slice(sl("second-1", "second", ["10.0.0.2", "10.0.0.3"], ports=[]))
    store.flush()
    assert len(sink.rejections) == 1
    # When the first goes, the second takes the frontend over.
    store.remove_service("default/first")
    store.flush()
    assert "default/first" not in sink.services
    fronts = sink.services["default/second"].frontends
    assert fronts[Frontend("10.96.0.1", 80)] == (
        Endpoint("10.0.0.2", 8080),
        Endpoint("10.0.0.3", 8080),
    )
    assert Frontend("10.96.0.1", 81) in fronts


def test_service_whose_every_frontend_is_taken_is_not_upserted_until_freed() -> None:
    store, sink = make()
    store.put_service(s("first", "10.96.0.1"), "f")
    store.put_service(s("copy", "10.96.0.1"), "g")
    store.flush()
    assert set(sink.services) == {"default/first"}
    assert [r.obj for r in sink.rejections] == ["Service default/copy"]
    # The first moves to another IP: the copy gets 10.96.0.1 in the same flush.
    store.put_service(s("first", "10.96.0.9"), "f")
    store.flush()
    assert set(sink.services["default/first"].frontends) == {Frontend("10.96.0.9", 80)}
    assert set(sink.services["default/copy"].frontends) == {Frontend("10.96.0.1", 80)}


def test_udp_and_tcp_on_same_ip_port_do_not_conflict() -> None:
    store, sink = make()
    store.put_service(s("tcp", "10.96.0.1", ports=[{"port": 53, "protocol": "TCP"}]), "f")
    store.put_service(s("udp", "10.96.0.1", ports=[{"port": 53, "protocol": "UDP"}]), "f")
    store.flush()
    assert set(sink.services) == {"default/tcp", "default/udp"}
    assert sink.rejections == []


def test_first_claimant_in_one_batch_is_the_first_put() -> None:
    store, sink = make()
    store.put_service(s("zz-early", "10.96.0.1"), "f")
    store.put_service(s("aa-late", "10.96.0.1"), "f")
    store.flush()
    assert set(sink.services) == {"default/zz-early"}


def test_resync_drops_what_was_not_listed_again_then_synced() -> None:
    store, sink = make()
    store.put_service(s("keep", "10.96.0.1"), "k")
    store.put_service(s("gone", "10.96.0.2"), "k")
    store.put_slice(sl("keep-1", "keep", ["10.0.0.1"]))
    store.put_slice(sl("keep-2", "keep", ["10.0.0.2"]))
    store.flush()
    sink.reset_calls()
    store.begin_resync()
    store.put_service(s("keep", "10.96.0.1"), "k")
    store.put_slice(sl("keep-1", "keep", ["10.0.0.1"]))
    store.end_resync()
    assert ops(sink) == [("upsert", "default/keep"), ("delete", "default/gone"), ("synced", "")]
    assert sink.services["default/keep"].endpoint_count() == 1


def test_resync_of_one_kind_keeps_the_other_and_marked_objects() -> None:
    store, sink = make()
    store.put_service(s("a", "10.96.0.1"), "k")
    store.put_service(s("b", "10.96.0.2"), "k")
    store.put_slice(sl("a-1", "a", ["10.0.0.1"]))
    store.flush()
    store.begin_resync()
    store.put_service(s("a", "10.96.0.1"), "k")
    store.mark_seen("Service", "default/b")  # listed, but its new version was refused
    store.end_resync(("Service",))
    assert set(sink.services) == {"default/a", "default/b"}
    assert sink.services["default/a"].endpoint_count() == 1  # slices untouched
    assert sink.synced_count == 1


def test_a_sink_failure_for_one_service_is_reported_and_the_others_go_on() -> None:
    store, sink = make()
    real_upsert = sink.upsert

    def picky(svc: Any) -> None:
        if svc.key == "default/bad":
            raise RuntimeError("map full")
        real_upsert(svc)

    sink.upsert = picky
    store.put_service(s("bad", "10.96.0.1"), "b.yaml")
    store.put_service(s("good", "10.96.0.2"), "g.yaml")
    store.flush()
    assert set(sink.services) == {"default/good"}
    [rej] = sink.rejections
    assert rej.obj == "Service default/bad" and "map full" in rej.reason
    assert rej.where == "b.yaml"
    # Retried at its next change, once the sink takes it.
    sink.upsert = real_upsert
    store.put_slice(sl("bad-1", "bad", ["10.0.0.1"]))
    store.flush()
    assert sink.services["default/bad"].endpoint_count() == 1


def test_frontend_of_a_service_the_sink_refused_is_freed_when_it_goes() -> None:
    store, sink = make()
    real_upsert = sink.upsert

    def picky(svc: Any) -> None:
        if svc.key == "default/bad":
            raise RuntimeError("map full")
        real_upsert(svc)

    sink.upsert = picky
    store.put_service(s("bad", "10.96.0.1"), "b.yaml")
    store.put_service(s("other", "10.96.0.1"), "o.yaml")
    store.flush()
    assert sink.services == {}
    store.remove_service("default/bad")
    store.flush()
    assert set(sink.services["default/other"].frontends) == {Frontend("10.96.0.1", 80)}
