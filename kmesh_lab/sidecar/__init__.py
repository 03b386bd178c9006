"""The sidecar peer: a userspace proxy (HAProxy) in each meshed pod, with istio-iptables'
capture, so a request takes the sidecar's three hops (client app -> client sidecar ->
server sidecar -> server app).

- routes.py: the services, from the lab's manifests through kmesh_node.translate;
- capture.py: istio-iptables' nat rules for one pod (pure);
- haproxy.py + templates/: the proxy's config and routes map (pure);
- apply.py: put it all in the pods, reload on change, remove, read counters
  (`python -m kmesh_lab.sidecar`, used by roles/peer_sidecar).
"""
