"""The manifest directory source: scan, watch (inotify and polling), bad input."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmesh_node.model import Endpoint, Frontend, LbPolicy
from kmesh_node.sources import open_source
from kmesh_node.sources.manifests import ManifestSource, split_documents
from tests import fakes

service, endpoint_slice = fakes.service, fakes.endpoint_slice


def dump(*docs: Any) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def write(path: Path, text: str, atomic: bool = False) -> None:
    if atomic:  # what editors and `kubectl`-style tools do: write aside, rename over
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        path.write_text(text)


def pair(name: str, ip: str, addrs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    return service(name, ip), endpoint_slice(f"{name}-1", name, addrs)


def scan(directory: Path) -> tuple[ManifestSource, Any]:
    sink = fakes.RecordingSink()
    src = ManifestSource(directory, sink, LbPolicy.RANDOM, use_inotify=False)
    src.rescan()
    return src, sink


def addresses(sink: Any, key: str, ip: str, port: int = 80) -> list[str]:
    return [e.address for e in sink.services[key].frontends[Frontend(ip, port)]]


@contextmanager
def running(directory: Path, inotify: bool) -> Iterator[Any]:
    sink = fakes.RecordingSink()
    src = ManifestSource(directory, sink, LbPolicy.RANDOM, poll_interval=0.05, use_inotify=inotify)
    stop = threading.Event()
    thread = threading.Thread(target=src.run, args=(stop,), name="manifest-source")
    thread.start()
    try:
        assert sink.wait_for(lambda s: s.synced_count == 1), "no synced() after the scan"
        yield sink
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive(), "run() did not return after stop was set"
    assert sink.threads == {"manifest-source"}, "sink called from another thread"


# --- scanning and parsing --------------------------------------------------------------


def test_split_documents_keeps_each_document_apart_with_its_first_line() -> None:
    text = "---\na: 1\n---\nb: 2\nbb: 3\n--- # c\nc: 3\n...\n"
    docs = split_documents(text)
    assert [yaml.safe_load(d) for _, d in docs] == [{"a": 1}, {"b": 2, "bb": 3}, {"c": 3}]
    assert [line for line, _ in docs] == [1, 3, 6]
    assert split_documents("a: '---'\nb: |\n  ---x\n") == [(1, "a: '---'\nb: |\n  ---x\n")]


def test_initial_scan_reads_multi_document_files_yaml_and_yml(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", dump(*pair("a", "10.96.0.1", ["10.0.0.1", "10.0.0.2"])))
    write(tmp_path / "b.yml", dump(*pair("b", "10.96.0.2", ["10.0.0.3"])))
    write(tmp_path / "notes.txt", dump(*pair("c", "10.96.0.3", ["10.0.0.4"])))
    write(tmp_path / ".hidden.yaml", dump(*pair("d", "10.96.0.4", ["10.0.0.5"])))
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "e.yaml", dump(*pair("e", "10.96.0.5", ["10.0.0.6"])))
    _, sink = scan(tmp_path)
    assert set(sink.services) == {"default/a", "default/b"}
    assert addresses(sink, "default/a", "10.96.0.1") == ["10.0.0.1", "10.0.0.2"]
    assert sink.services["default/b"].frontends == {
        Frontend("10.96.0.2", 80): (Endpoint("10.0.0.3", 8080),)
    }
    assert sink.rejections == []


def test_service_and_slice_in_different_files_are_joined(tmp_path: Path) -> None:
    svc, slc = pair("a", "10.96.0.1", ["10.0.0.1"])
    write(tmp_path / "svc.yaml", dump(svc))
    write(tmp_path / "eps.yaml", dump(slc))
    _, sink = scan(tmp_path)
    assert addresses(sink, "default/a", "10.96.0.1") == ["10.0.0.1"]
    # Each service reaches the sink once: the scan flushes after reading every file.
    assert [c for c in sink.calls if c[0] == "upsert"].__len__() == 1


def test_kubectl_style_list_documents_are_read(tmp_path: Path) -> None:
    svc, slc = pair("a", "10.96.0.1", ["10.0.0.1"])
    write(tmp_path / "dump.yaml", dump({"apiVersion": "v1", "kind": "List", "items": [svc, slc]}))
    _, sink = scan(tmp_path)
    assert addresses(sink, "default/a", "10.96.0.1") == ["10.0.0.1"]


# --- bad input ---------------------------------------------------------------------


def test_broken_document_does_not_drop_its_valid_siblings(tmp_path: Path) -> None:
    a, a_eps = pair("a", "10.96.0.1", ["10.0.0.1"])
    b, b_eps = pair("b", "10.96.0.2", ["10.0.0.2"])
    broken = "---\nkind: Service\nmetadata: {name: [broken\n---\n"
    text = dump(a, a_eps) + broken + dump(b, b_eps)
    write(tmp_path / "mixed.yaml", text)
    _, sink = scan(tmp_path)
    assert set(sink.services) == {"default/a", "default/b"}
    [rej] = sink.rejections
    assert rej.where == str(tmp_path / "mixed.yaml")
    assert rej.obj == "document 3"
    assert "not valid YAML" in rej.reason and "fix the syntax" in rej.reason
    # The line is the file's, where the broken mapping starts being wrong.
    broken_line = text.splitlines().index("metadata: {name: [broken") + 1
    assert f"at line {broken_line} " in rej.reason or f"at line {broken_line + 1} " in rej.reason


def test_invalid_objects_are_rejected_by_name_and_others_keep_working(tmp_path: Path) -> None:
    good, good_eps = pair("good", "10.96.0.1", ["10.0.0.1"])
    bad_ip = service("bad-ip", "10.96.0.999")
    port_zero = service("port-zero", "10.96.0.3", ports=[{"port": 0}])
    port_big = service("port-big", "10.96.0.4", ports=[{"port": 70000}])
    no_ip = service("no-ip", "")
    huge = endpoint_slice("huge", "good", [f"10.2.{i // 250}.{i % 250}" for i in range(1001)])
    bad_ep = endpoint_slice("bad-ep", "good", ["10.0.0.300"])
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    nameless = {"apiVersion": "v1", "kind": "Service", "spec": {}}
    docs = [good, good_eps, bad_ip, port_zero, port_big, no_ip, huge, bad_ep, deployment, nameless]
    write(tmp_path / "all.yaml", dump(*docs))
    _, sink = scan(tmp_path)
    assert set(sink.services) == {"default/good"}
    assert addresses(sink, "default/good", "10.96.0.1") == ["10.0.0.1"]
    by_obj = {r.obj: r.reason for r in sink.rejections}
    assert set(by_obj) == {
        "Service default/bad-ip",
        "Service default/port-zero",
        "Service default/port-big",
        "Service default/no-ip",
        "EndpointSlice default/huge",
        "EndpointSlice default/bad-ep",
        "Deployment default/d",
        "document 10",
    }
    assert "10.96.0.999" in by_obj["Service default/bad-ip"]
    assert "1-65535" in by_obj["Service default/port-zero"]
    assert "70000" in by_obj["Service default/port-big"]
    assert "at most 1000" in by_obj["EndpointSlice default/huge"]
    assert "metadata" in by_obj["document 10"]
    assert all(r.where == str(tmp_path / "all.yaml") for r in sink.rejections)


def test_duplicate_cluster_ip_across_files_first_keeps_it(tmp_path: Path) -> None:
    write(tmp_path / "1.yaml", dump(*pair("first", "10.96.0.1", ["10.0.0.1"])))
    write(tmp_path / "2.yaml", dump(*pair("second", "10.96.0.1", ["10.0.0.2"])))
    src, sink = scan(tmp_path)
    assert set(sink.services) == {"default/first"}
    assert addresses(sink, "default/first", "10.96.0.1") == ["10.0.0.1"]
    [rej] = sink.rejections
    assert rej.where == str(tmp_path / "2.yaml") and rej.obj == "Service default/second"
    (tmp_path / "1.yaml").unlink()
    src.rescan()
    assert set(sink.services) == {"default/second"}
    assert addresses(sink, "default/second", "10.96.0.1") == ["10.0.0.2"]


def test_same_object_in_two_files_first_file_wins_until_it_lets_go(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", dump(service("web", "10.96.0.1")))
    write(tmp_path / "b.yaml", dump(service("web", "10.96.0.2")))
    src, sink = scan(tmp_path)
    assert set(sink.services["default/web"].frontends) == {Frontend("10.96.0.1", 80)}
    [rej] = sink.rejections
    assert rej.where == str(tmp_path / "b.yaml") and "also defined in" in rej.reason
    (tmp_path / "a.yaml").unlink()
    src.rescan()
    assert set(sink.services["default/web"].frontends) == {Frontend("10.96.0.2", 80)}


def test_file_edited_into_broken_yaml_keeps_its_last_good_objects(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    a, a_eps = pair("a", "10.96.0.1", ["10.0.0.1"])
    b, b_eps = pair("b", "10.96.0.2", ["10.0.0.2"])
    write(path, dump(a, a_eps, b, b_eps))
    src, sink = scan(tmp_path)
    sink.reset_calls()
    # Half-saved: b's documents are cut off mid-way and broken.
    write(path, dump(a, a_eps) + "---\napiVersion: v1\nkind: Service\nmetadata: {name: b\n")
    src.rescan()
    assert set(sink.services) == {"default/a", "default/b"}, "a broken save deleted services"
    assert [c[0] for c in sink.calls] == ["rejected"]
    # Fixed without b: now b really goes.
    write(path, dump(a, a_eps))
    src.rescan()
    assert set(sink.services) == {"default/a"}
    assert ("delete", "default/b") in sink.calls


def test_invalid_update_keeps_previous_version_like_the_api_server(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    a, a_eps = pair("a", "10.96.0.1", ["10.0.0.1"])
    write(path, dump(a, a_eps))
    src, sink = scan(tmp_path)
    bad = service("a", "10.96.0.1", ports=[{"port": 0}])
    write(path, dump(bad, a_eps))
    src.rescan()
    assert addresses(sink, "default/a", "10.96.0.1") == ["10.0.0.1"]
    [rej] = sink.rejections
    assert rej.obj == "Service default/a" and "previous version stays" in rej.reason
    # An unchanged broken document is not reported again when a sibling changes.
    write(path, dump(bad, endpoint_slice("a-1", "a", ["10.0.0.1", "10.0.0.7"])))
    src.rescan()
    assert len(sink.rejections) == 1
    assert addresses(sink, "default/a", "10.96.0.1") == ["10.0.0.1", "10.0.0.7"]


def test_unreadable_file_is_rejected_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    write(path, dump(*pair("a", "10.96.0.1", ["10.0.0.1"])))
    src, sink = scan(tmp_path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    src.rescan()
    assert set(sink.services) == {"default/a"}
    assert sink.rejections[-1].obj == "file" and "UTF-8" in sink.rejections[-1].reason


def test_headless_service_is_ignored_and_a_service_turned_headless_goes(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    write(path, dump(*pair("a", "10.96.0.1", ["10.0.0.1"])))
    src, sink = scan(tmp_path)
    write(path, dump(service("a", "None"), endpoint_slice("a-1", "a", ["10.0.0.1"])))
    src.rescan()
    assert sink.services == {}
    assert sink.rejections == []


# --- watching ----------------------------------------------------------------------


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
def test_watch_create_modify_delete_files_and_objects(tmp_path: Path, inotify: bool) -> None:
    write(tmp_path / "a.yaml", dump(*pair("a", "10.96.0.1", ["10.0.0.1"])))
    with running(tmp_path, inotify) as sink:
        assert set(sink.services) == {"default/a"}
        # Create a file.
        b, b_eps = pair("b", "10.96.0.2", ["10.0.0.2"])
        write(tmp_path / "b.yaml", dump(b, b_eps))
        assert sink.wait_for(lambda s: "default/b" in s.services)
        # Modify one object inside a multi-object file: only that service is upserted.
        c, c_eps = pair("c", "10.96.0.3", ["10.0.0.3"])
        write(tmp_path / "b.yaml", dump(b, b_eps, c, c_eps))
        assert sink.wait_for(lambda s: "default/c" in s.services)
        sink.reset_calls()
        b_eps2 = endpoint_slice("b-1", "b", ["10.0.0.2", "10.0.0.9"])
        write(tmp_path / "b.yaml", dump(b, b_eps2, c, c_eps), atomic=True)
        assert sink.wait_for(lambda s: s.services["default/b"].endpoint_count() == 2)
        assert [(n, a.key) for n, a in sink.calls] == [("upsert", "default/b")]
        # Delete an object from a file.
        sink.reset_calls()
        write(tmp_path / "b.yaml", dump(b, b_eps2))
        assert sink.wait_for(lambda s: "default/c" not in s.services)
        assert sink.calls == [("delete", "default/c")]
        # Delete a file.
        (tmp_path / "a.yaml").unlink()
        assert sink.wait_for(lambda s: "default/a" not in s.services)
        # Move a file out of the directory, then back in.
        outside = tmp_path.parent / f"{tmp_path.name}-b.yaml"
        os.replace(tmp_path / "b.yaml", outside)
        assert sink.wait_for(lambda s: s.services == {})
        os.replace(outside, tmp_path / "b.yaml")
        assert sink.wait_for(lambda s: set(s.services) == {"default/b"})
        assert sink.rejections == []
        assert sink.synced_count == 1


def test_watch_follows_a_configmap_style_symlink_swap(tmp_path: Path) -> None:
    # A ConfigMap volume: name.yaml -> ..data/name.yaml, ..data -> ..2024_x (swapped).
    first = tmp_path / "..v1"
    first.mkdir()
    write(first / "svc.yaml", dump(*pair("a", "10.96.0.1", ["10.0.0.1"])))
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "svc.yaml").symlink_to("..data/svc.yaml")
    with running(tmp_path, inotify=True) as sink:
        assert addresses(sink, "default/a", "10.96.0.1") == ["10.0.0.1"]
        second = tmp_path / "..v2"
        second.mkdir()
        write(second / "svc.yaml", dump(*pair("a", "10.96.0.1", ["10.0.0.5"])))
        (tmp_path / "..data_tmp").symlink_to("..v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        assert sink.wait_for(lambda s: addresses(s, "default/a", "10.96.0.1") == ["10.0.0.5"])


def test_watch_survives_broken_save_then_fix(tmp_path: Path) -> None:
    a, a_eps = pair("a", "10.96.0.1", ["10.0.0.1"])
    write(tmp_path / "a.yaml", dump(a, a_eps))
    with running(tmp_path, inotify=True) as sink:
        write(tmp_path / "a.yaml", "apiVersion: v1\nkind: [Service\n")
        assert sink.wait_for(lambda s: len(s.rejections) == 1)
        assert set(sink.services) == {"default/a"}
        write(tmp_path / "a.yaml", dump(a, endpoint_slice("a-1", "a", ["10.0.0.4"])))
        assert sink.wait_for(lambda s: addresses(s, "default/a", "10.96.0.1") == ["10.0.0.4"])


def test_watch_falls_back_to_polling_without_inotify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inotify_simple

    def no_watches(*args: Any, **kwargs: Any) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(inotify_simple, "INotify", no_watches)
    write(tmp_path / "a.yaml", dump(*pair("a", "10.96.0.1", ["10.0.0.1"])))
    with running(tmp_path, inotify=True) as sink:
        assert set(sink.services) == {"default/a"}
        write(tmp_path / "b.yaml", dump(*pair("b", "10.96.0.2", ["10.0.0.2"])))
        assert sink.wait_for(lambda s: "default/b" in s.services)


def test_watch_comes_back_when_the_directory_is_recreated(tmp_path: Path) -> None:
    watched = tmp_path / "manifests"
    watched.mkdir()
    write(watched / "a.yaml", dump(*pair("a", "10.96.0.1", ["10.0.0.1"])))
    with running(watched, inotify=True) as sink:
        (watched / "a.yaml").unlink()
        assert sink.wait_for(lambda s: s.services == {})
        watched.rmdir()
        watched.mkdir()
        write(watched / "b.yaml", dump(*pair("b", "10.96.0.2", ["10.0.0.2"])))
        assert sink.wait_for(lambda s: set(s.services) == {"default/b"})
        write(watched / "c.yaml", dump(*pair("c", "10.96.0.3", ["10.0.0.3"])))
        assert sink.wait_for(lambda s: set(s.services) == {"default/b", "default/c"})


def test_object_defined_twice_in_one_file_first_definition_wins(tmp_path: Path) -> None:
    first = service("web", "10.96.0.1")
    second = service("web", "10.96.0.2")
    write(tmp_path / "a.yaml", dump(first, second))
    _, sink = scan(tmp_path)
    assert set(sink.services["default/web"].frontends) == {Frontend("10.96.0.1", 80)}
    [rej] = sink.rejections
    assert rej.obj == "Service default/web" and "document 2" in rej.reason


def test_directories_named_like_manifests_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    write(tmp_path / "a.yaml", dump(*pair("a", "10.96.0.1", ["10.0.0.1"])))
    _, sink = scan(tmp_path)
    assert set(sink.services) == {"default/a"} and sink.rejections == []


# --- open_source ---------------------------------------------------------------------


def test_open_source_builds_a_manifest_source(tmp_path: Path) -> None:
    src = open_source(f"manifests:{tmp_path}", fakes.RecordingSink(), LbPolicy.ROUND_ROBIN)
    assert isinstance(src, ManifestSource) and src.directory == tmp_path


@pytest.mark.parametrize("spec", ["manifests:", "manifest:/tmp", "", "k8s", "etcd:x"])
def test_open_source_bad_spec_names_the_accepted_forms(spec: str) -> None:
    with pytest.raises(RuntimeError) as info:
        open_source(spec, fakes.RecordingSink(), LbPolicy.RANDOM)
    assert "manifests:DIR" in str(info.value) and "kubernetes" in str(info.value)


def test_open_source_missing_directory_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="create it"):
        open_source(f"manifests:{tmp_path / 'nope'}", fakes.RecordingSink(), LbPolicy.RANDOM)
