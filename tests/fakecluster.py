"""A stand-in for docker, kind, kubectl, istioctl and helm, so that the cluster roles' task
logic (arguments, conditions, `changed_when`, idempotence) runs on a machine without a
container engine or a cluster (tests/integration/test_cluster_roles.py).

    python tests/fakecluster.py TOOL ARGS...      (the test puts a wrapper per TOOL on PATH)

State lives in $FAKE_CLUSTER_STATE/state.json. It answers the way the real tools do for the
calls the roles make, in the same words (`created` / `configured` / `unchanged`, `labeled` /
`not labeled`, helm's JSON release list), and it checks what it is given: every object
`kubectl apply` receives is validated like tests/unit/test_cluster_manifests.py does
(kubernetes-validate for built-in kinds, tests/unit/cluster_schemas.py for the rest), the
IstioOperator istioctl installs and the values helm installs against their schemas, and a
kubeconfig must exist before kubectl, istioctl or helm talk to "the cluster". Anything it
does not know fails loudly, so a new call in a role needs a matching answer here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.unit import cluster_schemas

K8S_VERSION = "1.35.0"
KIND_VERSION = "kind v0.33.0 go1.24.6 linux/amd64"
ISTIO_VERSION = "1.30.4"


class Fail(Exception):
    pass


def state_path() -> Path:
    return Path(os.environ["FAKE_CLUSTER_STATE"]) / "state.json"


def load() -> dict[str, Any]:
    p = state_path()
    if p.is_file():
        return json.loads(p.read_text())
    return {
        "images": [],
        "clusters": [],
        "objects": {},
        "namespaces": {},
        "releases": {},
        "calls": [],
    }


def save(state: dict[str, Any]) -> None:
    state_path().write_text(json.dumps(state, indent=1, sort_keys=True))


def take(args: list[str], flag: str, default: str | None = None) -> str | None:
    """Remove `flag VALUE` (or flag=VALUE) from args and return VALUE."""
    for i, a in enumerate(args):
        if a == flag:
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if a.startswith(flag + "="):
            del args[i]
            return a.split("=", 1)[1]
    return default


def need_kubeconfig(args: list[str]) -> None:
    path = take(args, "--kubeconfig")
    if not path or not Path(path).is_file():
        raise Fail(f"error: kubeconfig {path!r} not found (no cluster)")


# --------------------------------------------------------------------------- docker/podman
def docker(state: dict, args: list[str]) -> str:
    cmd = args[0]
    if cmd == "info":
        return "Server Version: fake"
    if args[:2] == ["image", "inspect"]:
        if args[2] not in state["images"]:
            raise Fail(f"Error: No such image: {args[2]}")
        return "[{}]"
    if cmd == "build":
        tag = take(args, "-t")
        containerfile = take(args, "-f")
        if not containerfile or not Path(containerfile).is_file():
            raise Fail(f"no Containerfile {containerfile}")
        if not Path(args[-1], "kmesh_node").is_dir():
            raise Fail(f"build context {args[-1]} has no kmesh_node/")
        state["images"].append(tag)
        return f"Successfully tagged {tag}"
    if cmd == "save":
        out = take(args, "-o")
        if args[-1] not in state["images"]:
            raise Fail(f"no image {args[-1]}")
        Path(out).write_text(args[-1])  # type: ignore[arg-type]
        return ""
    raise Fail(f"fake docker: unknown call {args}")


# --------------------------------------------------------------------------- kind
def kind(state: dict, args: list[str]) -> str:
    if args == ["version"]:
        return KIND_VERSION
    if args[:2] == ["get", "clusters"]:
        return "\n".join(state["clusters"]) or "No kind clusters found."
    if args[:2] == ["create", "cluster"]:
        name = take(args, "--name")
        config = take(args, "--config")
        kubeconfig = take(args, "--kubeconfig")
        take(args, "--wait")
        if name in state["clusters"]:
            raise Fail(
                "ERROR: failed to create cluster: node(s) already exist for a cluster "
                f'with the name "{name}"'
            )
        doc = yaml.safe_load(Path(config).read_text())  # type: ignore[arg-type]
        jsonschema.Draft202012Validator(cluster_schemas.KIND_CLUSTER).validate(doc)
        state["clusters"].append(name)
        state["kind_config"] = doc
        Path(kubeconfig).write_text(f"# fake kubeconfig of {name}\n")  # type: ignore[arg-type]
        return f"Creating cluster {name!r} ..."
    if args[:2] == ["export", "kubeconfig"]:
        name = take(args, "--name")
        if name not in state["clusters"]:
            raise Fail(f"ERROR: unknown cluster {name!r}")
        Path(take(args, "--kubeconfig")).write_text(f"# fake kubeconfig of {name}\n")  # type: ignore[arg-type]
        return ""
    if args[:2] == ["delete", "cluster"]:
        name = take(args, "--name")
        if name in state["clusters"]:
            state["clusters"].remove(name)
            state["objects"], state["namespaces"], state["releases"] = {}, {}, {}
        return f"Deleting cluster {name!r} ..."
    if args[:2] == ["load", "image-archive"]:
        name = take(args, "--name")
        if name not in state["clusters"] or not Path(args[2]).is_file():
            raise Fail(f"ERROR: cannot load {args[2:]} into {name!r}")
        state.setdefault("loaded", []).append(Path(args[2]).read_text())
        return ""
    raise Fail(f"fake kind: unknown call {args}")


# --------------------------------------------------------------------------- kubectl
def _key(doc: dict) -> str:
    ns = doc["metadata"].get("namespace", "")
    return f"{doc['kind']}/{ns}/{doc['metadata']['name']}"


def _validate(doc: dict) -> None:
    schema = cluster_schemas.CUSTOM.get((doc.get("apiVersion"), doc.get("kind")))  # type: ignore[arg-type]
    if schema is not None:
        if doc["apiVersion"].split("/")[0].endswith("istio.io") and not _istio_crds():
            raise Fail(
                f'error: resource mapping not found for kind "{doc["kind"]}": '
                "ensure CRDs are installed first"
            )
        jsonschema.Draft202012Validator(schema).validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


_STATE: dict[str, Any] = {}


def _istio_crds() -> bool:
    return bool(_STATE.get("istiod_image"))


def kubectl(state: dict, args: list[str]) -> str:
    need_kubeconfig(args)
    ns = take(args, "-n")
    cmd = args[0]
    if cmd == "apply":
        out = []
        for doc in yaml.safe_load_all(Path(take(args, "-f")).read_text()):  # type: ignore[arg-type]
            if not doc:
                continue
            _validate(doc)
            if doc["kind"] == "Namespace":
                state["namespaces"].setdefault(doc["metadata"]["name"], {})
            elif (
                doc["metadata"].get("namespace")
                and doc["metadata"]["namespace"] not in state["namespaces"]
            ):
                raise Fail(
                    "Error from server (NotFound): namespaces "
                    f'"{doc["metadata"]["namespace"]}" not found'
                )
            key = _key(doc)
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
            old = state["objects"].get(key)
            verb = (
                "created"
                if old is None
                else ("unchanged" if old["digest"] == digest else "configured")
            )
            state["objects"][key] = {"digest": digest, "doc": doc}
            out.append(f"{doc['kind'].lower()}/{doc['metadata']['name']} {verb}")
        return "\n".join(out)
    if cmd == "wait":
        return "node/fake-control-plane condition met"
    if args[:2] == ["rollout", "status"]:
        kind_, name = args[2].split("/")
        kinds = {"deployment": "Deployment", "daemonset": "DaemonSet"}
        if f"{kinds[kind_]}/{ns}/{name}" not in state["objects"]:
            raise Fail(f'Error from server (NotFound): {kind_}s.apps "{name}" not found')
        return f'{kind_} "{name}" successfully rolled out'
    if args[:2] == ["rollout", "restart"]:
        names = [k.split("/")[2] for k in state["objects"] if k.startswith(f"Deployment/{ns}/")]
        if not names:
            raise Fail("error: no objects passed to restart")
        state.setdefault("restarts", []).append(ns)
        return "\n".join(f"deployment.apps/{n} restarted" for n in names)
    if args[:2] == ["get", "pods"]:
        selector = take(args, "-l")
        app = selector.split("=", 1)[1]  # type: ignore[union-attr]
        dep = state["objects"].get(f"Deployment/{ns}/{app}")
        replicas = dep["doc"]["spec"]["replicas"] if dep else 0
        if "-o" in args and "name" in args[args.index("-o") + 1]:
            return " ".join(f"{app}-{i}" for i in range(replicas))
        return " ".join(f"10.244.{i + 1}.5" for i in range(replicas))
    if args[:3] == ["get", "deployment", "istiod"]:
        if "name" in args:
            return "deployment.apps/istiod" if _istio_crds() else ""
        return _STATE.get("istiod_image", "")
    if args[:2] == ["get", "namespaces"]:
        return " ".join(sorted(state["namespaces"]))
    if args[:2] == ["create", "namespace"]:
        if args[2] in state["namespaces"]:
            raise Fail(f'Error from server (AlreadyExists): namespaces "{args[2]}" already exists')
        state["namespaces"][args[2]] = {}
        return f"namespace/{args[2]} created"
    if args[:2] == ["label", "--overwrite"] or args[0] == "label":
        rest = [a for a in args[1:] if a != "--overwrite"]
        _, name, label = rest
        if name not in state["namespaces"]:
            raise Fail(f'Error from server (NotFound): namespaces "{name}" not found')
        labels = state["namespaces"][name]
        if label.endswith("-"):
            return (
                f"namespace/{name} unlabeled"
                if labels.pop(label[:-1], None) is not None
                else f"namespace/{name} not labeled"
            )
        k, v = label.split("=", 1)
        if labels.get(k) == v:
            return f"namespace/{name} not labeled"
        labels[k] = v
        return f"namespace/{name} labeled"
    if cmd == "delete":
        return ""
    raise Fail(f"fake kubectl: unknown call {args}")


# --------------------------------------------------------------------------- istioctl, helm
def istioctl(state: dict, args: list[str]) -> str:
    if args[:1] == ["version"]:
        return ISTIO_VERSION
    need_kubeconfig(args)
    if args[:2] == ["install", "-y"]:
        doc = yaml.safe_load(Path(take(args, "-f")).read_text())  # type: ignore[arg-type]
        jsonschema.Draft202012Validator(cluster_schemas.ISTIO_OPERATOR).validate(doc)
        state["istiod_image"] = f"docker.io/istio/pilot:{ISTIO_VERSION}"
        state["namespaces"].setdefault("istio-system", {})
        state["istio_operator"] = doc
        state["objects"]["Deployment/istio-system/istiod"] = {"digest": "", "doc": {}}
        return "Installation complete"
    raise Fail(f"fake istioctl: unknown call {args}")


def helm(state: dict, args: list[str]) -> str:
    need_kubeconfig(args)
    ns = take(args, "-n")
    if args[0] == "list":
        name = take(args, "--filter").strip("^$")  # type: ignore[union-attr]
        rel = state["releases"].get(f"{ns}/{name}")
        return json.dumps([rel] if rel else [])
    if args[:2] == ["upgrade", "--install"]:
        version = take(args, "--version")
        values = yaml.safe_load(Path(take(args, "-f")).read_text())  # type: ignore[arg-type]
        jsonschema.Draft202012Validator(cluster_schemas.KMESH_VALUES).validate(values)
        if not state.get("istiod_image"):
            raise Fail("Kmesh without istiod")
        release, chart = args[2], args[3]
        state["releases"][f"{ns}/{release}"] = {
            "name": release,
            "namespace": ns,
            "status": "deployed",
            "chart": f"{chart.rsplit('/', 1)[-1]}-{version}",
        }
        state["namespaces"].setdefault(ns, {})
        state["objects"][f"DaemonSet/{ns}/kmesh"] = {"digest": "", "doc": {}}
        return f'Release "{release}" has been upgraded. Happy Helming!'
    raise Fail(f"fake helm: unknown call {args}")


TOOLS = {
    "docker": docker,
    "podman": docker,
    "kind": kind,
    "kubectl": kubectl,
    "istioctl": istioctl,
    "helm": helm,
}


def main(argv: list[str]) -> int:
    tool, args = argv[0], list(argv[1:])
    state = load()
    _STATE.clear()
    _STATE.update(state)
    state["calls"].append([tool, *args])
    try:
        out = TOOLS[tool](state, args)
    except Fail as exc:
        save(state)
        print(exc, file=sys.stderr)
        return 1
    except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
        save(state)
        print(f"error: invalid object: {exc}", file=sys.stderr)
        return 1
    save(state)
    if out:
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
