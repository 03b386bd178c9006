#!/usr/bin/python
"""Ansible module: a long-running lab process, started once, stopped by its recorded PID."""

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_daemon
short_description: Start or stop one kmesh-lab process (inside a pod or on the host)
options:
  name: {type: str, required: true, description: unique name (PID file and log name)}
  argv: {type: list, elements: str, description: command to run, required for started}
  pod: {type: str, description: run inside this lab pod (its netns and cgroups)}
  ready_port: {type: int, description: wait until a TCP listener on this port appears}
  ready_timeout: {type: float, default: 10, description: seconds to wait for ready_port}
  state: {type: str, choices: [started, stopped], default: started, description: wanted state}
  state_dir: {type: path, default: /run/kmesh-lab, description: lab state directory}
author: kmesh-lab
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "argv": {"type": "list", "elements": "str"},
            "pod": {"type": "str"},
            "ready_port": {"type": "int"},
            "ready_timeout": {"type": "float", "default": 10.0},
            "state": {"type": "str", "choices": ["started", "stopped"], "default": "started"},
            "state_dir": {"type": "path", "default": "/run/kmesh-lab"},
        },
        required_if=[("state", "started", ["argv"])],
    )
    p = module.params
    try:
        from kmesh_lab import daemon

        if p["state"] == "stopped":
            module.exit_json(changed=daemon.stop(p["state_dir"], p["name"]))
        changed = daemon.start(
            p["state_dir"],
            p["name"],
            p["argv"],
            pod=p["pod"],
            ready_port=p["ready_port"],
            timeout=p["ready_timeout"],
        )
        module.exit_json(changed=changed, pid=daemon.running(p["state_dir"], p["name"]))
    except (RuntimeError, OSError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
