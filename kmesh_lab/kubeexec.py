"""Run a command in a pod of the Kubernetes backend (kind) through `kubectl exec`.

    python -m kmesh_lab.kubeexec POD -- CMD [ARGS...]     (tools/podexec.sh dispatches here
                                                           when KMESH_LAB_BACKEND=kind)

POD is a pod name or TYPE/NAME (e.g. deploy/fortio-client); [NAMESPACE:]POD picks the
namespace, else $KMESH_LAB_NAMESPACE, else "lab-client". $KMESH_LAB_KUBECONFIG (or
$KUBECONFIG) names the cluster; the container is $KMESH_LAB_CONTAINER (default "fortio").

`tools/fortio.sh ...` is special: the fortio client image has no bash and no copy of the
repository, so the wrapper runs HERE, forced to its fortio runner, with a `fortio` on PATH
that is this module in shim mode: it runs `fortio` in the pod with `-json -` and writes the
JSON the pod prints to the file fortio.sh asked for. The suites get the same JSON file, with
"Runner": "fortio", on every backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEFAULT_NAMESPACE = "lab-client"
DEFAULT_CONTAINER = "fortio"
SHIM_DIR = Path(__file__).resolve().parent / "kubeexec_bin"


def target(pod: str, env: dict[str, str]) -> tuple[str, str]:
    """(namespace, pod) from [NAMESPACE:]POD and the environment."""
    namespace, sep, name = pod.partition(":")
    if not sep:
        namespace, name = env.get("KMESH_LAB_NAMESPACE") or DEFAULT_NAMESPACE, pod
    if not namespace or not name:
        raise ValueError(f"bad pod {pod!r}: use POD, TYPE/NAME or NAMESPACE:POD")
    return namespace, name


def kubectl_exec(namespace: str, pod: str, cmd: list[str], env: dict[str, str]) -> list[str]:
    argv = ["kubectl"]
    kubeconfig = env.get("KMESH_LAB_KUBECONFIG") or env.get("KUBECONFIG")
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    container = env.get("KMESH_LAB_CONTAINER") or DEFAULT_CONTAINER
    return [*argv, "exec", "-n", namespace, pod, "-c", container, "--", *cmd]


def json_target(args: list[str]) -> tuple[list[str], str | None]:
    """Replace fortio's -json FILE with -json - and return FILE (None: stdout already)."""
    out: list[str] = []
    path: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-json", "--json"):
            if i + 1 >= len(args):
                raise ValueError("flag -json needs a value")
            path = args[i + 1]
            i += 2
            continue
        if a.startswith(("-json=", "--json=")):
            path = a.split("=", 1)[1]
            i += 1
            continue
        out.append(a)
        i += 1
    if path is None or path == "-":
        return args, None
    # fortio wants the flags of `load` before the URL: put -json right after the subcommand.
    return [out[0], "-json", "-", *out[1:]] if out else ["-json", "-"], path


def shim(args: list[str], env: dict[str, str]) -> int:
    """`fortio ARGS` as fortio.sh calls it, run in the pod named by $KMESH_LAB_EXEC_POD."""
    namespace, pod = target(env["KMESH_LAB_EXEC_POD"], env)
    fortio_args, path = json_target(args)
    argv = kubectl_exec(namespace, pod, ["fortio", *fortio_args], env)
    if path is None:
        return subprocess.call(argv)
    with open(path, "wb") as out:
        return subprocess.call(argv, stdout=out)


def main(argv: list[str], env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    if argv[:1] == ["--fortio-shim"]:
        try:
            return shim(argv[1:], env)
        except (KeyError, ValueError) as exc:
            print(f"kubeexec fortio shim: {exc}", file=sys.stderr)
            return 2
    if len(argv) < 3 or argv[1] != "--":
        print("usage: podexec.sh POD -- CMD [ARGS...]  (kind backend)", file=sys.stderr)
        return 2
    pod, cmd = argv[0], argv[2:]
    try:
        namespace, name = target(pod, env)
    except ValueError as exc:
        print(f"podexec: {exc}", file=sys.stderr)
        return 2
    if Path(cmd[0]).name == "fortio.sh":
        env["PATH"] = f"{SHIM_DIR}{os.pathsep}{env.get('PATH', '')}"
        env["KMESH_LAB_LOADGEN"] = "fortio"
        env["KMESH_LAB_EXEC_POD"] = f"{namespace}:{name}"
        os.execvpe(cmd[0], cmd, env)
    os.execvp("kubectl", kubectl_exec(namespace, name, cmd, env))
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
