"""Write the lab's Services as Kubernetes manifests for kmesh_node's watched directory.

    python -m kmesh_lab.services write --manifests-dir D --file NAME --count N
                                       [--start I] [--endpoints K] [--port 80]
    python -m kmesh_lab.services remove --manifests-dir D --file NAME

Each service is a `v1 Service` (ClusterIP from the service CIDR, by index) and one
`discovery.k8s.io/v1 EndpointSlice` whose ready endpoints are the lab's server pods (from
lab.json), K of them rotated by index so that load spreads over the servers. Files are
written atomically (temp + rename) so the agent never reads half a file. `write` prints JSON:
{"file": path, "services": [{"name", "namespace", "vip", "port", "endpoints"}]}.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from pathlib import Path

import yaml

from kmesh_lab import lab

SERVICE_CIDR = "10.96.0.0/12"  # Kubernetes' default service range
FIRST_OFFSET = 10  # leave the first addresses free, as Kubernetes does for kubernetes/dns
NAMESPACE = "lab"


def vip(index: int, cidr: str = SERVICE_CIDR) -> str:
    net = ipaddress.ip_network(cidr)
    offset = FIRST_OFFSET + index
    if offset >= net.num_addresses - 1:
        raise ValueError(f"service index {index} does not fit in {cidr}: use a larger CIDR")
    return str(net.network_address + offset)


def manifests(
    start: int, count: int, servers: list[str], endpoints: int, port: int
) -> tuple[list[dict], list[dict]]:
    """Service and EndpointSlice objects for services start..start+count-1."""
    if not servers:
        raise ValueError("the lab has no server pods: bring the lab up with netns_lab_pods >= 1")
    k = min(endpoints, len(servers))
    docs: list[dict] = []
    listing: list[dict] = []
    for index in range(start, start + count):
        name = f"svc-{index:05d}"
        addresses = [servers[(index + j) % len(servers)] for j in range(k)]
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": vip(index),
                    "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": 80}],
                },
            }
        )
        docs.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-1",
                    "namespace": NAMESPACE,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
            }
        )
        listing.append(
            {
                "name": name,
                "namespace": NAMESPACE,
                "vip": vip(index),
                "port": port,
                "endpoints": addresses,
            }
        )
    return docs, listing


def write(manifests_dir: Path, file: str, docs: list[dict]) -> Path:
    manifests_dir.mkdir(parents=True, exist_ok=True)
    path = manifests_dir / f"{file}.yaml"
    # A dot-file is ignored by the agent's watch until the rename makes it whole.
    tmp = manifests_dir / f".{file}.yaml.tmp"
    tmp.write_text(yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False))
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmesh_lab.services", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write COUNT services into FILE.yaml")
    w.add_argument("--manifests-dir", type=Path, required=True)
    w.add_argument("--file", required=True, help="file name without .yaml")
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--start", type=int, default=0, help="index of the first service")
    w.add_argument("--endpoints", type=int, default=3, help="endpoints per service (capped)")
    w.add_argument("--port", type=int, default=80)
    w.add_argument("--state-dir", type=Path, default=lab.DEFAULT_STATE_DIR)
    r = sub.add_parser("remove", help="remove FILE.yaml (its services are deleted)")
    r.add_argument("--manifests-dir", type=Path, required=True)
    r.add_argument("--file", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "remove":
            path = args.manifests_dir / f"{args.file}.yaml"
            existed = path.is_file()
            path.unlink(missing_ok=True)
            print(json.dumps({"file": str(path), "removed": existed}))
            return 0
        if args.count < 1 or args.start < 0 or args.endpoints < 1:
            raise ValueError("--count and --endpoints must be >= 1 and --start >= 0")
        state = lab.load_state(args.state_dir)
        servers = [p["address"] for p in state["pods"].values() if p["role"] == "server"]
        docs, listing = manifests(args.start, args.count, servers, args.endpoints, args.port)
        path = write(args.manifests_dir, args.file, docs)
        print(json.dumps({"file": str(path), "services": listing}))
        return 0
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
