"""Read a directory of Service/EndpointSlice manifests the way the agent reads it.

The peers (kube-proxy's rules, the sidecar's routes) serve the same services as the agent:
every *.yaml/*.yml file (dot files skipped, `kind: List` unpacked), each object through the
agent's own parser (kmesh_node.translate.parse_object); what it refuses is kept with the
file name and its reason, like the agent's log says it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kmesh_node.model import LbPolicy, LbService
from kmesh_node.translate import InvalidObject, ServiceSpec, SliceSpec, parse_object, translate


@dataclass
class Read:
    # service key -> (parsed Service, the raw object: some peers read fields the agent drops)
    services: dict[str, tuple[ServiceSpec, dict[str, Any]]] = field(default_factory=dict)
    slices: dict[str, list[SliceSpec]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "file: reason"
    digest: str = ""  # sha256 of the file names and contents (changes when any file does)

    def translated(self) -> Iterator[tuple[ServiceSpec, dict[str, Any], LbService]]:
        """Each service (sorted by key) with its raw object and its load-balancing view."""
        for key, (spec, obj) in sorted(self.services.items()):
            yield spec, obj, translate(spec, self.slices.get(key, []), LbPolicy.RANDOM)


def files(directory: Path) -> list[Path]:
    """The manifest files in `directory`, sorted (a missing directory has none)."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.glob("*")
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )


def objects(text: str) -> Iterator[Any]:
    for doc in yaml.load_all(text, Loader=yaml.CSafeLoader):
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List":
            yield from doc.get("items", [])
        else:
            yield doc


def read(directory: Path) -> Read:
    out = Read()
    digest = hashlib.sha256()
    for path in files(directory):
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + data + b"\0")
        for obj in objects(data.decode()):
            try:
                spec = parse_object(obj)
            except InvalidObject as exc:
                out.skipped.append(f"{path.name}: {exc.reason}")
                continue
            if isinstance(spec, ServiceSpec):
                out.services[spec.key] = (spec, obj)
            elif isinstance(spec, SliceSpec):
                out.slices.setdefault(spec.service_key, []).append(spec)
    out.digest = digest.hexdigest()
    return out
