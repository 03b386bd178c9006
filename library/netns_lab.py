#!/usr/bin/python
"""Ansible module: the netns lab's pods (namespaces, routed veths, cgroups, CPU limits)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: netns_lab
short_description: Create or remove the kmesh-lab network-namespace lab
description:
  - Creates a node namespace and one namespace per pod joined by routed veths, a cgroup v2
    directory per pod and its CPU limit (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us on
    hybrid hosts). Idempotent; reports changed only when something was created or fixed.
  - With state=absent removes everything carrying the prefix, processes included.
options:
  state: {type: str, choices: [present, absent], default: present, description: wanted state}
  prefix: {type: str, default: kmlab, description: name prefix of namespaces and cgroups}
  pod_cidr: {type: str, default: 10.244.0.0/24, description: pod addresses}
  clients: {type: int, default: 1, description: number of client pods}
  servers: {type: int, default: 2, description: number of server pods}
  client_cpu_m: {type: raw, default: 0, description: client CPU limit in millicores, 0 none}
  server_cpu_m: {type: raw, default: 0, description: server CPU limit in millicores, 0 none}
  state_dir: {type: path, default: /run/kmesh-lab, description: lab state and PID files}
author: kmesh-lab
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "prefix": {"type": "str", "default": "kmlab"},
            "pod_cidr": {"type": "str", "default": "10.244.0.0/24"},
            "clients": {"type": "int", "default": 1},
            "servers": {"type": "int", "default": 2},
            "client_cpu_m": {"type": "raw", "default": 0},
            "server_cpu_m": {"type": "raw", "default": 0},
            "state_dir": {"type": "path", "default": "/run/kmesh-lab"},
        },
        supports_check_mode=False,
    )
    p = module.params
    try:
        from kmesh_lab import lab  # installed in the lab's venv (make bootstrap)

        if p["state"] == "absent":
            changed = lab.down(p["prefix"], p["state_dir"])
            module.exit_json(changed=changed)
        spec = lab.build_spec(
            p["prefix"],
            p["pod_cidr"],
            p["clients"],
            p["servers"],
            p["client_cpu_m"],
            p["server_cpu_m"],
            p["state_dir"],
        )
        changed = lab.up(spec)
        module.exit_json(changed=changed, lab=lab.load_state(p["state_dir"]))
    except (RuntimeError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
