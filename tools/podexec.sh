#!/usr/bin/env bash
# Run a command inside a lab pod (its netns and cgroups): tools/podexec.sh POD -- CMD [ARGS...]
# Every suite goes through this one helper; the work is done by kmesh_lab/podexec.py.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# Kubernetes backends (KMESH_LAB_BACKEND=kind|vm): `kubectl exec` into the pod instead
# (kmesh_lab/kubeexec.py); the netns lab (unset or netns) is unchanged.
if [[ ${KMESH_LAB_BACKEND:-netns} != netns ]]; then
	exec "$here/.venv/bin/python" -m kmesh_lab.kubeexec "$@"
fi
exec "$here/.venv/bin/python" -m kmesh_lab.podexec "$@"
