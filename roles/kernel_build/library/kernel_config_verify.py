#!/usr/bin/python
"""Ansible module: did every option the config fragments asked for survive olddefconfig?"""

from __future__ import annotations

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kernel_build_lib import (
    KernelBuildError,
    describe_dropped,
    dropped,
    requested,
)

DOCUMENTATION = r"""
module: kernel_config_verify
short_description: Check a final kernel .config against the fragments merged into it
description:
  - Fails naming each option a fragment asked for whose final value differs (dropped by
    unmet dependencies, overridden by a select, or unknown to this kernel).
options:
  config: {type: path, required: true, description: the final .config}
  fragments:
    {type: list, elements: path, required: true, description: fragment files, in merge order}
author: kmesh-lab
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config": {"type": "path", "required": True},
            "fragments": {"type": "list", "elements": "path", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        frags = [(Path(f).name, Path(f).read_text()) for f in p["fragments"]]
        lost = dropped(frags, Path(p["config"]).read_text())
        if lost:
            module.fail_json(
                msg=describe_dropped(lost, p["config"]), dropped=[d.name for d in lost]
            )
        module.exit_json(changed=False, verified=len(requested(frags)))
    except (KernelBuildError, OSError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
