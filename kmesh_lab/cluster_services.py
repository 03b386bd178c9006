"""Render the lab's bulk Services for a Kubernetes cluster, in batch files of `kubectl apply`.

    python -m kmesh_lab.cluster_services render --out-dir D --count N --servers IP[,IP...]
                                                [--batch 500] [--endpoints 3] [--port 80]
                                                [--cidr 10.100.0.0/16]

The objects are those kmesh_lab/services.py writes for the netns lab (the same `v1 Service`
+ `discovery.k8s.io/v1 EndpointSlice` pairs, names svc-NNNNN in namespace "lab"), so every
backend serves the same services; only two things differ on a cluster:

- the endpoints are the fortio server pods' IPs (read from the cluster), not lab.json;
- each ClusterIP is taken from --cidr, a sub-range of the cluster's service CIDR away from
  the addresses the cluster itself hands out first (kube-dns is 10.96.0.10 on kind, which is
  svc-00000's address in the netns lab).

Batch i (batch-NNNNN.yaml) holds services i*B .. i*B+B-1, as seed 002 created them: 500 at a
time. A file is rewritten only when its text changes, so a second run reports nothing
changed. Prints JSON: {"files": [...], "changed": [...], "services": N, "cidr": C}.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path

import yaml

from kmesh_lab import services

DEFAULT_CIDR = "10.100.0.0/16"
DEFAULT_BATCH = 500


def batches(
    count: int,
    servers: list[str],
    *,
    batch: int = DEFAULT_BATCH,
    endpoints: int = 3,
    port: int = 80,
    cidr: str = DEFAULT_CIDR,
) -> list[list[dict]]:
    """The documents of each batch: services.manifests() with ClusterIPs from `cidr`."""
    if count < 1 or batch < 1 or endpoints < 1:
        raise ValueError("--count, --batch and --endpoints must be >= 1")
    if not 1 <= port <= 65535:
        raise ValueError(f"--port {port} is not a TCP port (1-65535)")
    for ip in servers:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise ValueError(
                f"server address {ip!r} is not an IPv4 address: pass the fortio server "
                "pods' IPs (kubectl get pods -l app=fortio-server -o wide)"
            ) from None
    services.vip(count - 1, cidr)  # fails early, naming the CIDR, when it is too small
    out: list[list[dict]] = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        docs, _ = services.manifests(start, n, servers, endpoints, port)
        for doc in docs:
            if doc["kind"] == "Service":
                index = int(doc["metadata"]["name"].removeprefix("svc-"))
                doc["spec"]["clusterIP"] = services.vip(index, cidr)
        out.append(docs)
    return out


def write_batches(out_dir: Path, docs_per_batch: list[list[dict]]) -> tuple[list[str], list[str]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    changed: list[str] = []
    for i, docs in enumerate(docs_per_batch):
        path = out_dir / f"batch-{i:05d}.yaml"
        text = yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(str(path))
        files.append(str(path))
    # Batches beyond the count of this run (a smaller run after a larger one) go away.
    for stale in sorted(out_dir.glob("batch-*.yaml")):
        if str(stale) not in files:
            stale.unlink()
            changed.append(str(stale))
    return files, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kmesh_lab.cluster_services", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="write batch-NNNNN.yaml files of Services + EndpointSlices")
    r.add_argument("--out-dir", type=Path, required=True)
    r.add_argument("--count", type=int, required=True)
    r.add_argument("--servers", required=True, help="comma-separated server pod IPs")
    r.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    r.add_argument("--endpoints", type=int, default=3)
    r.add_argument("--port", type=int, default=80)
    r.add_argument("--cidr", default=DEFAULT_CIDR)
    args = parser.parse_args(argv)
    try:
        servers = [s for s in args.servers.split(",") if s]
        docs = batches(
            args.count,
            servers,
            batch=args.batch,
            endpoints=args.endpoints,
            port=args.port,
            cidr=args.cidr,
        )
        files, changed = write_batches(args.out_dir, docs)
    except (ValueError, OSError) as exc:
        print(f"cluster_services: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps({"files": files, "changed": changed, "services": args.count, "cidr": args.cidr})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
