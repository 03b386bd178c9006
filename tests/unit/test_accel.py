"""Sockmap acceleration without a kernel: the sockhash key, flags, units, status text."""

from __future__ import annotations

import argparse
import ctypes as ct
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from kmesh_node import accel, agent, cli
from kmesh_node import structs as st
from kmesh_node.progload import NO_ATTACH_TYPE, Unit, load_programs
from tests.unit.test_structs import c_layouts, defines


def test_constants_match_header() -> None:
    d = defines()
    assert d["KMN_CTR_ACCEL_REDIRECT"] == st.CTR_ACCEL_REDIRECT
    assert d["KMN_CTR_ACCEL_PASS"] == st.CTR_ACCEL_PASS
    assert max(st.CTR_ACCEL_REDIRECT, st.CTR_ACCEL_PASS) < st.CTR_MAX  # same counters map
    assert d["KMN_SOCKHASH_ENTRIES"] == st.SOCKHASH_ENTRIES


def test_sock_key_is_40_bytes_without_padding() -> None:
    size, _align, fields = c_layouts()["kmn_sock_key"]
    assert size == ct.sizeof(st.SockKey) == 40
    assert sum(f[2] for f in fields) == size  # no hole the program would leave unset
    assert accel.WANT_SHAPE[1:] == (40, 8, st.SOCKHASH_ENTRIES)


def test_ipv4_key_bytes_are_network_order_addresses_host_order_ports() -> None:
    key = st.sock_key(("10.244.1.2", 43210), ("10.244.3.4", 8080))
    raw = bytes(key)
    assert raw[0:4] == ipaddress.IPv4Address("10.244.1.2").packed
    assert raw[4:16] == bytes(12)
    assert raw[16:20] == ipaddress.IPv4Address("10.244.3.4").packed
    assert raw[32:36] == (43210).to_bytes(4, "little")  # sock_ops local_port: host order
    assert raw[36:40] == (8080).to_bytes(4, "little")


def test_ipv4_mapped_ipv6_folds_to_the_ipv4_key() -> None:
    # a dual-stack server socket ([::] listener) must find its IPv4 client and vice versa
    mapped = st.sock_key(("::ffff:10.244.3.4", 8080), ("::ffff:10.244.1.2", 43210))
    plain = st.sock_key(("10.244.3.4", 8080), ("10.244.1.2", 43210))
    assert bytes(mapped) == bytes(plain)


def test_peer_key_is_the_other_socket_own_key() -> None:
    client = st.sock_key(("10.244.1.2", 43210), ("10.244.3.4", 8080))
    server = st.sock_key(("10.244.3.4", 8080), ("10.244.1.2", 43210))
    assert bytes(st.peer_key(client)) == bytes(server)
    assert bytes(st.peer_key(server)) == bytes(client)


@pytest.mark.parametrize(
    ("local", "remote"),
    [(("10.244.0.9", 1), ("10.96.0.1", 65535)), (("fd00:244::5", 80), ("fd00:244::6", 5000))],
)
def test_decode_round_trips(local: tuple[str, int], remote: tuple[str, int]) -> None:
    assert st.decode_sock_key(st.sock_key(local, remote)) == (local, remote)


def test_bad_port_is_refused() -> None:
    with pytest.raises(ValueError, match="70000 is out of range"):
        st.sock_key(("10.0.0.1", 70000), ("10.0.0.2", 80))


def test_run_accelerate_flag_is_off_by_default() -> None:
    base = ["run", "--source", "manifests:/x", "--cgroup", "/sys/fs/cgroup/unified/x"]
    assert cli.build_parser().parse_args(base).accelerate is False
    assert cli.build_parser().parse_args([*base, "--accelerate"]).accelerate is True


def test_units_compile_one_program_per_source() -> None:
    units = accel.units()
    assert [(Path(u.source).name, u.prog_type) for u in units] == [
        ("sk_msg.c", "SK_MSG"),
        ("sockops.c", "SOCK_OPS"),
    ]
    for unit in units:
        assert Path(unit.source).is_file()
        ((hook, (func, attach)),) = unit.hooks.items()
        assert attach == NO_ATTACH_TYPE and func == f"kmn_{hook}"
        assert func in Path(unit.source).read_text()


def test_units_may_not_share_a_hook() -> None:
    unit = Unit("a.c", "SOCK_OPS", {"sockops": ("f", NO_ATTACH_TYPE)})
    with pytest.raises(ValueError, match="same hook"):
        load_programs([unit, unit], "/nonexistent", {})


def test_removal_order_stops_insertion_before_the_verdict() -> None:
    assert accel.PINS.index("link_sockops") < accel.PINS.index("link_sk_msg")
    assert accel.PINS[-1] == accel.SOCKHASH


def test_run_passes_the_flag_to_the_datapath(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_open(bpffs: str, cgroup: str, **kw: Any) -> None:
        seen.update(kw, bpffs=bpffs, cgroup=cgroup)
        raise Stop

    monkeypatch.setattr(agent.Datapath, "open", staticmethod(fake_open))
    monkeypatch.setattr(agent.signal, "signal", lambda *a: None)  # keep pytest's handlers
    monkeypatch.setattr("kmesh_node.sources.open_source", lambda *a: object())
    args = argparse.Namespace(
        source="manifests:/x",
        lb="random",
        bpffs="/sys/fs/bpf/t",
        cgroup="/sys/fs/cgroup/unified/t",
        stress_loops=0,
        accelerate=True,
    )
    with pytest.raises(Stop):
        agent.run_command(args)
    assert seen["accelerate"] is True and seen["stress_loops"] == 0


def _status(accel_info: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    agent._print_accel(accel_info)
    return capsys.readouterr().out


def test_status_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert "acceleration off" in _status({"enabled": False, "links": {}}, capsys)
    on = {
        "enabled": True,
        "links": {
            "sockops": {"prog_id": 7, "attached": True, "cgroup": "/sys/fs/cgroup/unified/lab"},
            "sk_msg": {"prog_id": 8, "attached": True, "map_id": 3},
        },
        "sockhash": {"entries": 4, "max_entries": 65536},
    }
    text = _status(on, capsys)
    assert "cgroup /sys/fs/cgroup/unified/lab" in text and "sockhash map 3" in text
    assert "acceleration on: sockhash 4 sockets of 65536" in text
    half = dict(on, enabled=False, links={"sk_msg": on["links"]["sk_msg"]})
    assert "INCOMPLETE (restart the agent)" in _status(half, capsys)


def test_preflight_sockmap_is_optional_unless_accelerating(tmp_path: Path) -> None:
    from kmesh_node import preflight
    from tests.unit.test_preflight import bad_probe, make_host

    host = make_host(tmp_path, sockmap=bad_probe)
    plain = {c.name: c for c in preflight.run_checks(host, "/sys/fs/bpf/x")}
    assert plain["sockmap"].status == "warn"
    fast = {c.name: c for c in preflight.run_checks(host, "/sys/fs/bpf/x", accelerate=True)}
    assert fast["sockmap"].status == "missing"
    assert "--accelerate" in fast["sockmap"].fix and "6.10" in fast["sockmap"].fix
    args = cli.build_parser().parse_args(["preflight", "--accelerate", "--json"])
    assert preflight.preflight_command(args, host) == 1


def test_accel_counters_are_prometheus_counters(tmp_path: Path) -> None:
    from kmesh_node import metrics
    from tests.unit.test_metrics import samples

    state = {"services": 1, "accel_redirect": 40, "accel_pass": 3}
    s = samples(metrics.Metrics(str(tmp_path / "not-pinned"), lambda: state))
    assert s[("kmesh_node_accel_redirected_messages_total", ())] == 40
    assert s[("kmesh_node_accel_passed_messages_total", ())] == 3
