#!/usr/bin/env bash
# Run a command inside a lab pod (its netns and cgroups): tools/podexec.sh POD -- CMD [ARGS...]
# Every suite goes through this one helper; the work is done by kmesh_lab/podexec.py.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
exec "$here/.venv/bin/python" -m kmesh_lab.podexec "$@"
