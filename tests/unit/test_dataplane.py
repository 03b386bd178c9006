"""kmesh_lab.dataplane: plane names, targets, the agent's files, the switch order and the
checks of a described state, with fakes for the kernel, the agent and the sidecar (no root)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kmesh_lab import dataplane, services


def write_suite(directory: Path, count: int = 3) -> None:
    servers = ["10.244.13.3", "10.244.13.4"]
    docs, _ = services.manifests(60000, count, servers, 1, 80)
    services.write(directory, "suite_latency", docs)


def make_lab(tmp_path: Path) -> dataplane.Lab:
    (tmp_path / "svc").mkdir()
    (tmp_path / "agent").mkdir()
    write_suite(tmp_path / "svc")
    services.write(tmp_path / "agent", "base", services.manifests(0, 1, ["10.0.0.1"], 1, 80)[0])
    return dataplane.Lab(
        tmp_path / "state",
        tmp_path / "svc",
        tmp_path / "agent",
        "suite_latency",
        "/sys/fs/bpf/x",
        "127.0.0.1:1",
    )


def test_planes_and_bad_name() -> None:
    assert dataplane.check_plane("sidecar") == "sidecar"
    assert set(dataplane.KMESH_PLANES) <= set(dataplane.PLANES)
    assert set(dataplane.KUBE_PROXY) <= set(dataplane.PLANES)
    with pytest.raises(dataplane.PlaneError, match="use one of pod_ip"):
        dataplane.check_plane("envoy")


def test_lab_refuses_a_non_suite_prefix_and_the_agent_dir(tmp_path: Path) -> None:
    with pytest.raises(dataplane.PlaneError, match="suite_"):
        dataplane.Lab(tmp_path, tmp_path / "a", tmp_path / "b", "base", "x", "h:1")
    with pytest.raises(dataplane.PlaneError, match="directory of its own"):
        dataplane.Lab(tmp_path, tmp_path / "a", tmp_path / "a", "suite_x", "x", "h:1")


def test_listing_and_targets(tmp_path: Path) -> None:
    lab_ = make_lab(tmp_path)
    svc = dataplane.listing(lab_.services_dir, lab_.prefix)
    assert [s["name"] for s in svc] == ["svc-60000", "svc-60001", "svc-60002"]
    first = svc[0]
    assert first["endpoints"] == ["10.244.13.3"]
    assert dataplane.target("pod_ip", first) == "10.244.13.3:80"
    assert dataplane.target("kmesh_node", first) == f"{first['vip']}:80"
    assert dataplane.target("kube_proxy_nftables", first) == f"{first['vip']}:80"
    with pytest.raises(dataplane.PlaneError, match="no endpoints"):
        dataplane.target("pod_ip", {**first, "endpoints": []})


def test_count_services(tmp_path: Path) -> None:
    lab_ = make_lab(tmp_path)
    assert dataplane.count_services(lab_.services_dir) == 3
    assert dataplane.count_services(lab_.agent_dir) == 1
    assert dataplane.count_services(tmp_path / "missing") == 0


def test_enroll_and_withdraw_copy_and_remove_only_the_suite_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_ = make_lab(tmp_path)
    waited: list[int] = []
    monkeypatch.setattr(
        dataplane, "_wait_agent", lambda lb: waited.append(dataplane.count_services(lb.agent_dir))
    )
    monkeypatch.setattr(dataplane.daemon, "running", lambda *_: 123)
    assert dataplane.enroll(lab_) is True
    assert (lab_.agent_dir / "suite_latency.yaml").read_bytes() == (
        lab_.services_dir / "suite_latency.yaml"
    ).read_bytes()
    assert dataplane.enroll(lab_) is False  # idempotent
    # a stale suite file the suite no longer has is removed
    (lab_.agent_dir / "suite_latency-old.yaml").write_text("")
    assert dataplane.enroll(lab_) is True
    assert not (lab_.agent_dir / "suite_latency-old.yaml").exists()
    assert dataplane.withdraw(lab_) is True
    assert dataplane.withdraw(lab_) is False
    assert (lab_.agent_dir / "base.yaml").is_file()  # the agent's own services stay
    assert waited == [4, 4, 4, 1, 1]  # it waited for the agent every time


def test_enroll_without_suite_services(tmp_path: Path) -> None:
    lab_ = make_lab(tmp_path)
    (lab_.services_dir / "suite_latency.yaml").unlink()
    with pytest.raises(dataplane.PlaneError, match="write the suite's services first"):
        dataplane.enroll(lab_)


def test_with_accelerate_toggles_one_flag() -> None:
    argv = ["kmesh-node", "run", "--lb", "random"]
    on = dataplane.with_accelerate(argv, True)
    assert on == [*argv, "--accelerate"]
    assert dataplane.with_accelerate(on, True) == on
    assert dataplane.with_accelerate(on, False) == argv


def test_acceleration_unavailable_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_ = make_lab(tmp_path)
    monkeypatch.setattr(dataplane.daemon, "running", lambda *_: 123)
    monkeypatch.setattr(dataplane, "agent_argv", lambda _: ["kmesh-node", "run"])
    monkeypatch.setattr(dataplane, "agent_supports_accelerate", lambda _: False)
    with pytest.raises(dataplane.PlaneUnavailable, match="no --accelerate flag"):
        dataplane.set_acceleration(lab_, True)
    assert dataplane.set_acceleration(lab_, False) is False  # already off: no restart


def state_for(plane: str, **over: Any) -> dict[str, Any]:
    """A described state that is exactly `plane`; `over` breaks one part of it."""
    kmesh = plane in dataplane.KMESH_PLANES
    kp_counts = {"rules": 30, "kube_nat_rules": 25}
    st: dict[str, Any] = {
        "data_plane": plane,
        "agent": {
            "running": True,
            "suite_files": ["suite_latency.yaml"] if kmesh else [],
            "acceleration": plane == "kmesh_node_accel",
            "accelerate_flag": plane == "kmesh_node_accel",
            "acceleration_enabled": plane == "kmesh_node_accel",
            "acceleration_hooks": ["sk_msg", "sockops"] if plane == "kmesh_node_accel" else [],
        },
        "kube_proxy": {
            "netns": "kmlat-node",
            "rules_in_kernel": 25 if plane in dataplane.KUBE_PROXY else 0,
        },
        "sidecar": {
            "running": plane == "sidecar",
            "capture_rules": 48 if plane == "sidecar" else 0,
        },
        "proxy": {"name": "haproxy", "version": "2.6"} if plane == "sidecar" else None,
    }
    if plane in dataplane.KUBE_PROXY:
        st["kube_proxy_rules"] = kp_counts
    for key, value in over.items():
        part, _, sub = key.partition("__")
        if sub:
            st[part][sub] = value
        else:
            st[part] = value
    return st


@pytest.mark.parametrize("plane", dataplane.PLANES)
def test_check_accepts_exactly_one_plane(plane: str) -> None:
    assert dataplane.check(state_for(plane), plane) == []


@pytest.mark.parametrize(
    ("plane", "over", "says"),
    [
        ("pod_ip", {"agent__suite_files": ["suite_latency.yaml"]}, "still serves"),
        ("kmesh_node", {"agent__suite_files": []}, "not in the agent's directory"),
        ("kmesh_node", {"kube_proxy__rules_in_kernel": 3}, "3 kube-proxy rules are left"),
        ("kmesh_node", {"agent__acceleration": True}, "acceleration is on"),
        ("kmesh_node_accel", {"agent__acceleration": False}, "acceleration is off"),
        ("kmesh_node_accel", {"agent__acceleration_enabled": False}, "not enabled in the kernel"),
        ("sidecar", {"sidecar__capture_rules": 0}, "no sidecar capture rules"),
        ("kube_proxy_iptables_nft", {"sidecar__capture_rules": 12}, "12 sidecar capture rules"),
        ("kube_proxy_nftables", {"kube_proxy_rules": {"rules": 0}}, "no kube-proxy nftables"),
        ("sidecar", {"sidecar__running": False}, "sidecars not running"),
        ("pod_ip", {"sidecar__running": True}, "sidecars running"),
        ("sidecar", {"proxy": {"name": None}}, "does not name its proxy"),
        ("kmesh_node", {"agent": {"running": False}}, "the agent is not running"),
    ],
)
def test_check_names_what_is_wrong(plane: str, over: dict[str, Any], says: str) -> None:
    problems = dataplane.check(state_for(plane, **over), plane)
    assert any(says in p for p in problems), problems


def test_select_switches_off_before_on_and_reports_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_ = make_lab(tmp_path)
    calls: list[str] = []

    def rec(name: str, changed: bool = True) -> Any:
        return lambda *a: calls.append(name) or changed

    monkeypatch.setattr(
        dataplane, "set_acceleration", lambda _l, on: calls.append(f"accel {on}") or False
    )
    monkeypatch.setattr(dataplane, "sidecar_off", rec("sidecar off", False))
    monkeypatch.setattr(dataplane, "sidecar_on", rec("sidecar on"))
    monkeypatch.setattr(dataplane, "kube_proxy_on", rec("kp on"))
    monkeypatch.setattr(dataplane, "kube_proxy_off", rec("kp off", False))
    monkeypatch.setattr(dataplane, "enroll", rec("enroll"))
    monkeypatch.setattr(dataplane, "withdraw", rec("withdraw", False))
    monkeypatch.setattr(dataplane, "describe", lambda _l, plane: state_for(plane))

    out = dataplane.select(lab_, "kmesh_node_accel")
    assert calls == ["sidecar off", "kp off", "enroll", "accel True"]
    assert out["changed"] is True
    assert out["plane"] == "kmesh_node_accel"

    calls.clear()
    out = dataplane.select(lab_, "sidecar")
    assert calls == ["accel False", "kp off", "withdraw", "sidecar on"]

    calls.clear()
    monkeypatch.setattr(dataplane, "withdraw", rec("withdraw", False))
    out = dataplane.select(lab_, "pod_ip")
    assert calls == ["accel False", "sidecar off", "kp off", "withdraw"]
    assert out["changed"] is False  # nothing to do: idempotent

    calls.clear()
    dataplane.select(lab_, "kube_proxy_iptables_nft")
    assert calls == ["accel False", "sidecar off", "kp on", "withdraw"]


def test_select_fails_when_the_lab_is_not_in_the_plane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_ = make_lab(tmp_path)
    for name in ("sidecar_off", "kube_proxy_off", "withdraw"):
        monkeypatch.setattr(dataplane, name, lambda *a: False)
    monkeypatch.setattr(dataplane, "set_acceleration", lambda *a: False)
    monkeypatch.setattr(
        dataplane,
        "describe",
        lambda _l, plane: state_for(plane, kube_proxy__rules_in_kernel=7),
    )
    with pytest.raises(dataplane.PlaneError, match="7 kube-proxy rules are left"):
        dataplane.select(lab_, "pod_ip")


def test_sidecar_missing_is_unavailable_not_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_ = make_lab(tmp_path)

    def missing() -> Any:
        raise dataplane.PlaneUnavailable("sidecar: the sidecar peer is missing")

    monkeypatch.setattr(dataplane, "_sidecar_apply", missing)
    with pytest.raises(dataplane.PlaneUnavailable, match="missing"):
        dataplane.sidecar_on(lab_)
    assert dataplane.sidecar_off(lab_) is False
    assert dataplane.sidecar_state(lab_)["available"] is False
    assert "missing" in str(dataplane.prerequisite_missing(lab_, "sidecar"))
    assert dataplane.prerequisite_missing(lab_, "pod_ip") is None


def test_sidecar_without_its_user_names_the_role(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    def no_user(uid: int) -> Any:
        raise KeyError(uid)

    monkeypatch.setattr(dataplane, "_sidecar_apply", lambda: object())
    monkeypatch.setattr(dataplane.shutil, "which", lambda _n: "/usr/sbin/haproxy")
    monkeypatch.setattr(pwd, "getpwuid", no_user)
    assert "roles/peer_sidecar" in str(dataplane._sidecar_missing())


def test_proxy_named_only_in_the_sidecar_plane() -> None:
    side = {"proxy": "haproxy", "version": "HAProxy version 2.6.12"}
    assert dataplane.proxy_of("sidecar", side) == {
        "name": "haproxy",
        "version": "HAProxy version 2.6.12",
    }
    assert dataplane.proxy_of("kmesh_node", side) is None


def test_cli_planes(capsys: pytest.CaptureFixture[str]) -> None:
    assert dataplane.main(["planes"]) == 0
    assert capsys.readouterr().out.split() == list(dataplane.PLANES)
