"""The Kubernetes API source against a local fake API server (no cluster runs here).

tests/fakes.py's FakeApiServer listens on 127.0.0.1 and speaks list/watch: paged lists,
chunked watch streams, bookmarks, 410 for a compacted resourceVersion, injected 500s.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kmesh_node.model import Endpoint, Frontend, LbPolicy
from kmesh_node.sources import open_source
from kmesh_node.sources.kubernetes import KubernetesSource, load_config
from tests import fakes

service, endpoint_slice = fakes.service, fakes.endpoint_slice


@pytest.fixture
def api() -> Iterator[Any]:
    with fakes.FakeApiServer() as server:
        yield server


def populate(api: Any, n: int) -> None:
    for i in range(n):
        api.apply(service(f"s{i}", f"10.96.0.{i + 1}"))
        api.apply(endpoint_slice(f"s{i}-1", f"s{i}", [f"10.0.{i}.1", f"10.0.{i}.2"]))


@contextmanager
def running(api: Any, tmp_path: Path, synced: int = 1, **options: Any) -> Iterator[Any]:
    cfg = load_config(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
    sink = fakes.RecordingSink()
    opts = {"backoff_initial": 0.02, "backoff_cap": 0.16, "watch_timeout_s": 20, "page_size": 2}
    opts.update(options)
    src = KubernetesSource(cfg, sink, LbPolicy.RANDOM, **opts)
    stop = threading.Event()
    thread = threading.Thread(target=src.run, args=(stop,), name="k8s-source")
    thread.start()
    try:
        if synced:
            assert sink.wait_for(lambda s: s.synced_count >= synced), "never synced"
        yield sink, src
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "run() did not return after stop was set"
    assert sink.threads <= {"k8s-source"}, "sink called from a reflector thread"


def test_initial_paged_list_then_synced_with_no_endpointless_flash(
    api: Any, tmp_path: Path
) -> None:
    populate(api, 5)
    with running(api, tmp_path) as (sink, _):
        assert set(sink.services) == {f"default/s{i}" for i in range(5)}
        assert sink.services["default/s3"].frontends == {
            Frontend("10.96.0.4", 80): (Endpoint("10.0.3.1", 8080), Endpoint("10.0.3.2", 8080))
        }
        # Nothing reached the sink before both lists were in: no service was ever shown
        # without its endpoints, and synced() came last.
        upserts = [a for n, a in sink.calls if n == "upsert"]
        assert len(upserts) == 5 and all(u.endpoint_count() == 2 for u in upserts)
        assert sink.calls[-1] == ("synced", None)
    # page_size=2 over 5 items: the list was paged with continue tokens.
    continues = [q for _, p, q, _ in api.requests if p == "/api/v1/services" and "continue" in q]
    assert len(continues) == 2


def test_watch_events_add_modify_delete_reach_the_sink(api: Any, tmp_path: Path) -> None:
    populate(api, 2)
    with running(api, tmp_path) as (sink, _):
        api.apply(service("new", "10.96.1.1"))
        api.apply(endpoint_slice("new-1", "new", ["10.1.0.1"]))
        assert sink.wait_for(lambda s: "default/new" in s.services)
        assert sink.wait_for(lambda s: s.services["default/new"].endpoint_count() == 1)
        sink.reset_calls()
        api.apply(endpoint_slice("s0-1", "s0", ["10.0.0.1"], not_ready=frozenset({"10.0.0.1"})))
        assert sink.wait_for(lambda s: s.services["default/s0"].endpoint_count() == 0)
        assert [(n, a.key) for n, a in sink.calls] == [("upsert", "default/s0")]
        api.delete("Service", "default/s1")
        assert sink.wait_for(lambda s: "default/s1" not in s.services)
        assert ("delete", "default/s1") in sink.calls
        assert set(sink.services) == {"default/s0", "default/new"}
        assert sink.rejections == []


def test_invalid_object_is_rejected_and_its_last_good_version_kept(
    api: Any, tmp_path: Path
) -> None:
    populate(api, 2)
    with running(api, tmp_path) as (sink, _):
        api.apply(service("s0", "10.96.0.1", ports=[{"port": 70000}]))
        api.apply(service("bad", "not-an-ip"))
        assert sink.wait_for(lambda s: len(s.rejections) == 2)
        by_obj = {r.obj: r for r in sink.rejections}
        assert by_obj["Service default/bad"].where == "kubernetes"
        assert "not-an-ip" in by_obj["Service default/bad"].reason
        assert "70000" in by_obj["Service default/s0"].reason
        # s0 keeps serving its last good version; s1 was never disturbed.
        assert sink.services["default/s0"].frontends[Frontend("10.96.0.1", 80)]
        assert set(sink.services) == {"default/s0", "default/s1"}


def test_relist_after_410_gone_applies_what_the_gap_missed(api: Any, tmp_path: Path) -> None:
    populate(api, 3)
    with running(api, tmp_path) as (sink, src):
        lists_before = src.reflectors["Service"].lists
        # The API server goes away (watches end, new ones fail with 500: backoff), and
        # while it is away a service is deleted, one is added, and history is compacted.
        api.fail_watches = True
        api.drop_watches()
        api.delete("Service", "default/s1")
        api.apply(service("late", "10.96.2.1"))
        api.apply(endpoint_slice("late-1", "late", ["10.2.0.1"]))
        api.compact()
        assert sink.wait_for(lambda s: any(c == 500 for *_, c in api.requests))
        api.fail_watches = False
        assert sink.wait_for(lambda s: s.synced_count >= 3), "no synced() after the relists"
        assert "default/s1" not in sink.services
        assert ("delete", "default/s1") in sink.calls
        assert sink.services["default/late"].frontends == {
            Frontend("10.96.2.1", 80): (Endpoint("10.2.0.1", 8080),)
        }
        assert src.reflectors["Service"].lists == lists_before + 1
        assert src.reflectors["EndpointSlice"].lists == 2
        # Watching again works after the relist.
        api.apply(service("after", "10.96.3.1"))
        assert sink.wait_for(lambda s: "default/after" in s.services)


def test_invalid_object_in_a_relist_keeps_its_last_good_version(api: Any, tmp_path: Path) -> None:
    populate(api, 2)
    with running(api, tmp_path) as (sink, _):
        good = sink.services["default/s0"]
        api.fail_watches = True
        api.drop_watches()
        api.apply(service("s0", "10.96.0.1", ports=[{"port": 0}]))  # only seen by the relist
        api.compact()
        api.fail_watches = False
        assert sink.wait_for(lambda s: s.synced_count >= 3), "no synced() after the relists"
        assert sink.services["default/s0"] == good, "the relist dropped a refused object"
        assert [r.obj for r in sink.rejections] == ["Service default/s0"]
        assert "port" in sink.rejections[0].reason


def test_bookmarks_move_the_resource_version_on(api: Any, tmp_path: Path) -> None:
    populate(api, 1)
    with running(api, tmp_path) as (sink, _):
        assert sink.wait_for(lambda s: bool(api.watch_versions("Service")))
        first = api.watch_versions("Service")[-1]
        # A slice change moves the global version; Service watchers hear only a bookmark.
        api.apply(endpoint_slice("s0-1", "s0", ["10.0.0.9"]))
        assert sink.wait_for(lambda s: s.services["default/s0"].endpoint_count() == 1)
        api.bookmark()
        bookmark_rv = api.rv
        assert bookmark_rv > first
        # Give the bookmark time to arrive before the stream ends (the server sends it
        # at once; the client reads it from the open stream). Nothing shows its arrival.
        time.sleep(0.3)
        api.drop_watches()
        assert sink.wait_for(lambda s: api.watch_versions("Service")[-1] == bookmark_rv)


def test_errors_back_off_exponentially_up_to_the_cap(api: Any, tmp_path: Path) -> None:
    populate(api, 1)
    with running(api, tmp_path, backoff_initial=0.04, backoff_cap=0.16) as (sink, _):
        api.fail_watches = True
        api.drop_watches()

        def failures() -> list[float]:
            return [
                t
                for t, p, q, c in list(api.requests)
                if p == "/api/v1/services" and q.get("watch") and c == 500
            ]

        assert sink.wait_for(lambda s: len(failures()) >= 7, timeout=10)
        api.fail_watches = False
        times = failures()[:7]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Delay n is in [b/2, b] for b = 0.04 * 2**n capped at 0.16, plus scheduling.
        assert gaps[0] < 0.3, gaps
        assert max(gaps) < 0.55, gaps  # uncapped, the 6th delay would be 0.64-1.28 s
        assert sum(gaps[-3:]) / 3 > 0.075, gaps  # grew into the cap's range [0.08, 0.16]
        api.apply(service("back", "10.96.4.1"))
        assert sink.wait_for(lambda s: "default/back" in s.services)


def test_garbage_in_the_watch_stream_is_survived(api: Any, tmp_path: Path) -> None:
    populate(api, 1)
    with running(api, tmp_path) as (sink, src):
        api.inject_raw("Service", "[1, 2, 3]")  # JSON, but not an event: relist
        assert sink.wait_for(lambda s: src.reflectors["Service"].lists >= 2)
        # A server-side stream whose client left may still be waiting: drop them all, so
        # that the next garbage line reaches a live watch.
        mark = api.drop_watches()
        assert sink.wait_for(lambda s: api.watches_since("Service", mark) >= 1)
        lists = src.reflectors["Service"].lists
        api.inject_raw("Service", "this is not json")  # watch again (after a backoff)
        assert sink.wait_for(lambda s: api.watches_since("Service", mark) >= 2)
        api.apply(service("after", "10.96.5.1"))
        assert sink.wait_for(lambda s: "default/after" in s.services)
        assert set(sink.services) == {"default/s0", "default/after"}
        assert src.reflectors["Service"].lists == lists  # bad JSON: watched again, no relist


def test_wrong_token_is_retried_and_never_syncs(api: Any, tmp_path: Path) -> None:
    populate(api, 1)
    api.token = "another-token"  # the kubeconfig is written with it, then the server changes
    cfg = load_config(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
    api.token = "the-real-token"
    sink = fakes.RecordingSink()
    src = KubernetesSource(cfg, sink, LbPolicy.RANDOM, backoff_initial=0.02, backoff_cap=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=src.run, args=(stop,))
    thread.start()
    try:
        assert sink.wait_for(lambda s: sum(c == 401 for *_, c in api.requests) >= 4)
        assert sink.calls == []
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_open_source_kubernetes_uses_kubeconfig_env(
    api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(api.write_kubeconfig(tmp_path / "kc")))
    src = open_source("kubernetes", fakes.RecordingSink(), LbPolicy.RANDOM)
    assert isinstance(src, KubernetesSource)
    explicit = open_source(f"kubernetes:{tmp_path / 'kc'}", fakes.RecordingSink(), LbPolicy.RANDOM)
    assert isinstance(explicit, KubernetesSource)


def test_missing_kubeconfig_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    for spec in ("kubernetes", f"kubernetes:{tmp_path / 'missing'}"):
        with pytest.raises(RuntimeError) as info:
            open_source(spec, fakes.RecordingSink(), LbPolicy.RANDOM)
        assert "KUBECONFIG" in str(info.value) and "manifests:DIR" in str(info.value)


def test_in_cluster_service_account_is_used_in_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("pod-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "not-used"))
    cfg = load_config(service_account=tmp_path)
    assert cfg.host == "https://10.96.0.1:443"
    assert cfg.ssl_ca_cert == str(tmp_path / "ca.crt")
    assert cfg.auth_settings()["BearerToken"]["value"].lower() == "bearer pod-token"
    # Outside a pod (no service host), the same call goes to the kubeconfig, and says so.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(RuntimeError, match="KUBECONFIG"):
        load_config(service_account=tmp_path)
