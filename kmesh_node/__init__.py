"""kmesh_node: an eBPF node agent for Kubernetes-style service load balancing.

See README.md (CLI) and docs/architecture.md (how the pieces fit).
"""

__version__ = "0.1.0"
