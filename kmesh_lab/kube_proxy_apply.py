"""Put kube-proxy's rules for the lab's manifests into a namespace, count them, remove them.

    python -m kmesh_lab.kube_proxy_apply apply --mode iptables|nftables [--backend nft|legacy]
        --manifests-dir D [--state-dir S] [--netns NS] [--cluster-cidr CIDR]
    python -m kmesh_lab.kube_proxy_apply remove [--state-dir S] [--netns NS]
    python -m kmesh_lab.kube_proxy_apply count --mode iptables|nftables [--backend nft|legacy]
        --netns NS

Services come from the same manifests the agent watches, through the agent's own
translation (kmesh_node.translate), so every data plane serves the same services. `apply`
renders (kmesh_lab.kube_proxy), compares the render's checksum and the kernel with what it
applied last time (kept in STATE_DIR/peer_kube_proxy.json), and only then runs ONE
`iptables-{nft,legacy}-restore --noflush` or ONE `nft -f`; switching mode or backend removes
the other data plane first. Every command prints one JSON object; `changed` is true only
when the kernel was written. Rule counts are read back from the kernel, never computed.

A legacy (`iptables-legacy`) nat table cannot be unregistered from a live namespace once
created (it keeps conntrack on): `remove` empties it and says so; the lab deletes and
recreates its namespaces per run, which is what truly clears it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kmesh_lab import kube_proxy as kp
from kmesh_lab import lab, manifests, netns, services

STATE_FILE = "peer_kube_proxy.json"
MODES = ("iptables", "nftables")
BACKENDS = ("nft", "legacy")


@dataclass(frozen=True)
class Loaded:
    ports: list[kp.ServicePort]
    skipped: list[str]  # objects the translator refused, with its reason


def load_manifests(directory: Path) -> Loaded:
    """Service ports from every *.yaml/*.yml in `directory` (like the agent reads them)."""
    read = manifests.read(directory)
    ports: list[kp.ServicePort] = []
    for spec, _obj, lb in read.translated():
        names = {(p.port, str(p.protocol)): p.name for p in spec.ports}
        ports += kp.service_ports(lb, names)
    return Loaded(ports, read.skipped)


def _ns(netns_name: str, *argv: str, stdin: str | None = None) -> str:
    cmd = ["ip", "netns", "exec", netns_name, *argv]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (rc {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def legacy_tables(netns_name: str) -> set[str]:
    """Legacy tables registered in the namespace (read without creating any)."""
    return set(_ns(netns_name, "cat", "/proc/net/ip_tables_names").split())


def iptables_save(netns_name: str, backend: str) -> str:
    if backend == "legacy" and not legacy_tables(netns_name):
        return ""  # iptables-legacy-save would register tables just by looking
    return _ns(netns_name, f"iptables-{backend}-save")


def nft_table_json(netns_name: str) -> list[dict[str, Any]] | None:
    cmd = ["ip", "netns", "exec", netns_name, "nft", "-j", "list", "table", "ip", kp.NFT_TABLE]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return None
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)["nftables"]


def rule_counts(netns_name: str, mode: str, backend: str = "nft") -> dict[str, Any]:
    """What the kernel holds, counted from `iptables-save` / `nft -j list`, not computed.

    iptables: `rules` = every `-A` line of every table, `nat_rules` = those of the nat
    table, `kube_nat_rules` = those in KUBE-* chains, `kube_chains` = KUBE-* chains.
    nftables: rules, chains, set and map elements of table `ip kube-proxy`.
    Reading 100k rules back takes tens of seconds on a small node: call it once per step.
    """
    if mode == "iptables":
        return count_saved(iptables_save(netns_name, backend), backend)
    return count_nft(nft_table_json(netns_name))


def count_saved(text: str, backend: str) -> dict[str, Any]:
    """Counts of one `iptables-save` output (see rule_counts)."""
    per_table: Counter[str] = Counter()
    kube_nat = 0
    chains = 0
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":KUBE-"):
            chains += 1
        elif line.startswith("-A "):
            per_table[table] += 1
            if table == "nat" and line.startswith("-A KUBE-"):
                kube_nat += 1
    return {
        "mode": "iptables",
        "backend": backend,
        "rules": sum(per_table.values()),
        "nat_rules": per_table["nat"],
        "kube_nat_rules": kube_nat,
        "kube_chains": chains,
    }


def count_nft(objects: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Counts of one `nft -j list table ip kube-proxy` output (see rule_counts)."""
    kinds: Counter[str] = Counter()
    elements = 0
    for obj in objects or []:
        kind = next(iter(obj))
        kinds[kind] += 1
        if kind in ("set", "map"):
            elements += len(obj[kind].get("elem", []))
    return {
        "mode": "nftables",
        "table": bool(objects),
        "rules": kinds["rule"],
        "chains": kinds["chain"],
        "elements": elements,
    }


def _state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def _read_state(state_dir: Path) -> dict[str, Any]:
    path = _state_path(state_dir)
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}  # a torn file only costs one re-apply


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = _state_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(_state_path(state_dir))


def remove(netns_name: str, keep: tuple[str, str] | None = None) -> dict[str, Any]:
    """Remove kube-proxy rules of every mode/backend from `netns_name` (except `keep`)."""
    removed: list[str] = []
    left: list[str] = []
    if netns_name not in netns.namespaces():
        return {"changed": False, "removed": [], "left": [], "netns": netns_name}
    for backend in BACKENDS:
        if keep == ("iptables", backend):
            continue
        text = iptables_save(netns_name, backend)
        restore = kp.removal_input(text)
        if restore:
            _ns(netns_name, f"iptables-{backend}-restore", "--noflush", stdin=restore)
            removed.append(f"iptables-{backend}")
    if keep != ("nftables", "nft") and nft_table_json(netns_name) is not None:
        _ns(netns_name, "nft", "-f", "-", stdin=kp.nft_removal_input())
        removed.append("nftables")
    if keep is None or keep[0] == "nftables":
        # iptables-nft leaves its (now empty) `ip nat` / `ip filter` tables: delete them
        # when no rule at all is left in them, so the namespace is as before.
        for table in ("nat", "filter"):
            if _empty_iptables_nft_table(netns_name, table):
                _ns(netns_name, "nft", "delete", "table", "ip", table)
    legacy = legacy_tables(netns_name)
    if legacy:
        left.append(
            f"legacy iptables tables {sorted(legacy)} stay registered (empty of KUBE-* chains) "
            f"in {netns_name}: the kernel cannot unregister them from a live namespace; "
            "the lab deletes and recreates its namespaces per run"
        )
    return {"changed": bool(removed), "removed": removed, "left": left, "netns": netns_name}


def _empty_iptables_nft_table(netns_name: str, table: str) -> bool:
    cmd = ["ip", "netns", "exec", netns_name, "nft", "-j", "list", "table", "ip", table]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return False
    objects = json.loads(proc.stdout)["nftables"]
    return not any("rule" in o for o in objects)


def apply(
    netns_name: str,
    mode: str,
    backend: str,
    ports: list[kp.ServicePort],
    cfg: kp.Config,
    state_dir: Path,
) -> dict[str, Any]:
    if mode not in MODES or backend not in BACKENDS:
        raise ValueError(
            f"mode {mode!r} / backend {backend!r}: use mode one of {MODES}, backend one of "
            f"{BACKENDS}"
        )
    if netns_name not in netns.namespaces():
        raise RuntimeError(f"namespace {netns_name!r} does not exist: bring the lab up first")
    if mode == "nftables":
        backend = "nft"
        rendered = kp.render_nftables(ports, cfg)
    else:
        rendered = kp.render_iptables(ports, cfg)
    digest = hashlib.sha256(rendered.encode()).hexdigest()
    previous = _read_state(state_dir)
    wanted = {"netns": netns_name, "mode": mode, "backend": backend, "sha256": digest}
    others = remove(netns_name, keep=(mode, backend))
    same = all(previous.get(k) == v for k, v in wanted.items())
    # Unchanged = same render as last time AND the kernel still holds it (a recreated
    # namespace or a hand-made flush re-applies). One kernel read when nothing changes.
    if mode == "nftables":
        counts = count_nft(nft_table_json(netns_name)) if same else None
        matches = counts is not None and counts["rules"] == rendered.count("\nadd rule ")
        if not matches:
            _ns(netns_name, "nft", "-f", "-", stdin=kp.nft_apply_input(rendered))
    else:
        before = iptables_save(netns_name, backend)
        counts = count_saved(before, backend)
        jumps = kp.saved_jumps(before)
        matches = (
            same
            and counts["kube_nat_rules"] == kp.expected_nat_rules(ports)
            and all(kp.has_jump(jumps.get(j.table, []), j) for j in kp.JUMPS)
        )
        if not matches:
            text = kp.apply_input(kp.iptables_tables(ports, cfg), before)
            _ns(netns_name, f"iptables-{backend}-restore", "--noflush", stdin=text)
    if not matches:
        counts = rule_counts(netns_name, mode, backend)
    changed = others["changed"] or not matches
    _write_state(state_dir, {**wanted, "service_ports": len(ports), "counts": counts})
    return {
        "changed": changed,
        **wanted,
        "service_ports": len(ports),
        "endpoints": sum(len(p.endpoints) for p in ports),
        "expected_nat_rules": kp.expected_nat_rules(ports) if mode == "iptables" else None,
        "counts": counts,
        "removed_other": others["removed"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kmesh_lab.kube_proxy_apply", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("apply", help="render from the manifests and apply (only on change)")
    c = sub.add_parser("count", help="rule counts read from the kernel")
    r = sub.add_parser("remove", help="remove every kube-proxy rule from the namespace")
    for p in (a, c):
        p.add_argument("--mode", choices=MODES, required=True)
        p.add_argument("--backend", choices=BACKENDS, default="nft")
    for p in (a, c, r):
        p.add_argument("--netns", help="namespace (default: the lab's node namespace)")
        p.add_argument("--state-dir", type=Path, default=lab.DEFAULT_STATE_DIR)
    a.add_argument("--manifests-dir", type=Path, required=True)
    a.add_argument("--cluster-cidr", help="pod CIDR (default: the lab's)")
    a.add_argument("--service-cidr", default=services.SERVICE_CIDR)
    args = parser.parse_args(argv)
    try:
        if args.command == "remove":
            name = args.netns
            if name is None:
                if not (args.state_dir / "lab.json").is_file():
                    print(json.dumps({"changed": False, "removed": [], "left": [], "netns": None}))
                    return 0
                name = lab.load_state(args.state_dir)["node_ns"]
            result = remove(name)
            if result["changed"]:
                _state_path(args.state_dir).unlink(missing_ok=True)
            print(json.dumps(result))
            return 0
        need_lab = args.netns is None or (args.command == "apply" and args.cluster_cidr is None)
        state = lab.load_state(args.state_dir) if need_lab else {}
        name = args.netns or state["node_ns"]
        if args.command == "count":
            print(json.dumps(rule_counts(name, args.mode, args.backend)))
            return 0
        loaded = load_manifests(args.manifests_dir)
        cfg = kp.Config(
            cluster_cidr=args.cluster_cidr or state["pod_cidr"],
            service_cidrs=(args.service_cidr,),
        )
        result = apply(name, args.mode, args.backend, loaded.ports, cfg, args.state_dir)
        result["skipped"] = loaded.skipped
        print(json.dumps(result))
        return 0
    except (ValueError, RuntimeError, OSError, yaml.YAMLError) as exc:
        print(f"kube_proxy_apply: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
