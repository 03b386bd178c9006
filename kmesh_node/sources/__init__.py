"""Where services come from: `open_source(spec, sink, default_policy)`.

A source runs in its own thread (`run(stop)` blocks until `stop` is set) and drives a
`Sink` through the one translation path (`kmesh_node.translate` + `sources.store`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from kmesh_node.model import LbPolicy, Sink

ACCEPTED_FORMS = (
    "accepted --source forms: 'manifests:DIR' (a directory of YAML manifests, watched), "
    "'kubernetes' (API list + watch; in-cluster service account, else $KUBECONFIG or "
    "~/.kube/config) or 'kubernetes:KUBECONFIG_PATH'"
)


class Source(Protocol):
    def run(self, stop: threading.Event) -> None:
        """Feed the sink until `stop` is set; calls come from this thread only."""


def open_source(spec: str, sink: Sink, default_policy: LbPolicy) -> Source:
    """Build the source named by `spec`; configuration errors raise RuntimeError now."""
    kind, _, arg = spec.partition(":")
    if kind == "manifests":
        if not arg:
            raise RuntimeError(f"--source {spec!r} names no directory; {ACCEPTED_FORMS}")
        directory = Path(arg)
        if not directory.is_dir():
            raise RuntimeError(
                f"manifest directory {arg!r} does not exist or is not a directory; "
                f"create it (it may start empty) or fix --source"
            )
        from kmesh_node.sources.manifests import ManifestSource

        return ManifestSource(directory, sink, default_policy)
    if kind == "kubernetes":
        from kmesh_node.sources.kubernetes import KubernetesSource, load_config

        return KubernetesSource(load_config(arg or None), sink, default_policy)
    raise RuntimeError(f"unknown --source {spec!r}; {ACCEPTED_FORMS}")
