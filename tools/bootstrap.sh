#!/usr/bin/env bash
# Make a fresh Debian 12 / Ubuntu 22.04+ host (as root) ready for the lab, idempotently:
#   1. the few Debian packages the venv itself needs (python3-venv, python3-apt, bcc),
#   2. .venv from the SYSTEM python3 with system site-packages (bcc lives there),
#      holding the pinned requirements.txt and this project (editable),
#   3. then Ansible takes over: playbooks/host.yml installs the rest, wires kernel headers
#      for bcc (with a warning when it must fall back to the distro's) and mounts bpffs.
# A second run checks stamps and takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "$(id -u)" != 0 ]; then
  echo "bootstrap: the lab creates namespaces, cgroups and BPF programs: run as root" >&2
  exit 1
fi

base_packages=(python3 python3-venv python3-apt python3-bpfcc)
missing=()
for pkg in "${base_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The system interpreter, never a pyenv/conda one: python3-bpfcc is built for it.
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv from /usr/bin/python3 (with system site-packages for bcc)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.kmesh-lab-requirements
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing pinned Python requirements into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

.venv/bin/ansible-playbook playbooks/host.yml
