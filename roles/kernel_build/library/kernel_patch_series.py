#!/usr/bin/python
"""Ansible module: identify or apply a kernel patch series, all or nothing."""

from __future__ import annotations

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kernel_build_lib import (
    KernelBuildError,
    apply_series,
    read_series,
    series_digest,
)

DOCUMENTATION = r"""
module: kernel_patch_series
short_description: Digest or apply a patch series (series file or sorted *.patch) to a kernel tree
description:
  - C(digest) returns the series (names in order) and a sha256 of names and contents.
  - C(apply) dry-runs each patch before applying it; on a reject the patches already applied
    are reversed and the module fails with the patch name and the rejected hunk.
options:
  patches_dir:
    {type: path, required: true, description: directory of *.patch files or a series file}
  tree: {type: path, description: kernel source tree (required for apply)}
  action: {type: str, choices: [digest, apply], default: digest, description: what to do}
author: kmesh-lab
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "patches_dir": {"type": "path", "required": True},
            "tree": {"type": "path"},
            "action": {"type": "str", "choices": ["digest", "apply"], "default": "digest"},
        },
        required_if=[("action", "apply", ["tree"])],
        supports_check_mode=True,
    )
    p = module.params
    try:
        patches = read_series(Path(p["patches_dir"]))
        result = {"series": [x.name for x in patches], "digest": series_digest(patches)}
        if p["action"] == "digest" or module.check_mode:
            module.exit_json(changed=False, **result)
        applied = apply_series(Path(p["tree"]), patches)
        module.exit_json(changed=True, applied=applied, **result)
    except (KernelBuildError, OSError) as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
