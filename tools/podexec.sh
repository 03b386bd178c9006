#!/usr/bin/env bash
# Run a command inside a lab pod (its netns and cgroups): tools/podexec.sh POD -- CMD [ARGS...]
# Every suite goes through this one helper; the work is done by kmesh_lab/podexec.py.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# The Kubernetes backend (KMESH_LAB_BACKEND=kind): `kubectl exec` into the pod instead
# (kmesh_lab/kubeexec.py); every other backend (unset: netns) is unchanged.
if [[ ${KMESH_LAB_BACKEND:-netns} == kind ]]; then
	exec "$here/.venv/bin/python" -m kmesh_lab.kubeexec "$@"
fi
exec "$here/.venv/bin/python" -m kmesh_lab.podexec "$@"
