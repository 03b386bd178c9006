"""Offline verification of what the cluster roles apply (kind, Istio, upstream Kmesh, the
kmesh_node DaemonSet, the fortio workloads and the bulk services).

No cluster runs here, so every template the cluster roles ship is rendered - with the roles'
defaults, for each backend option combination - and every document is validated:

- built-in Kubernetes kinds with kubernetes-validate (strict: unknown fields fail) against
  the schemas of the Kubernetes release the pinned kind node image runs;
- custom resources and tool configs (kind Cluster, IstioOperator, Istio security and
  networking CRDs, Kmesh chart values), which kubernetes-validate has no schema for, with the
  hand-written JSON schemas of tests/unit/cluster_schemas.py (written from upstream's
  documented fields; see that module).

The Python renderer mirrors Ansible's template module (trim_blocks, strict undefined, core
filters and tests);
test_ansible_renders_the_same proves it by rendering through playbooks/cluster_render.yml.
Negative tests: malformed documents and bad variables give errors that name the problem.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import jsonschema
import kubernetes_validate
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule as AnsibleFilters
from ansible.plugins.test.core import TestModule as AnsibleTests

from kmesh_lab import cluster_services, services
from tests.unit import cluster_schemas

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
CLUSTER_ROLES = ["kind_cluster", "istio", "kmesh_upstream", "cluster_workloads", "kmesh_node"]
# Every template the cluster roles ship, and how its output is checked.
TEMPLATES = {
    ("kind_cluster", "kind-config.yaml.j2"),
    ("istio", "istio-operator.yaml.j2"),
    ("istio", "policy.yaml.j2"),
    ("kmesh_upstream", "values.yaml.j2"),
    ("cluster_workloads", "namespaces.yaml.j2"),
    ("cluster_workloads", "fortio.yaml.j2"),
    ("kmesh_node", "daemonset.yaml.j2"),
}
# What the kind inventory gives every role (inventories/kind/group_vars/all.yml).
LAB_VARS = {
    "lab_backend": "kind",
    "lab_state_dir": "/run/kmesh-lab",
    "lab_manifests_dir": "/run/kmesh-lab/manifests",
    "lab_kubeconfig": "/run/kmesh-lab/kind/kubeconfig",
    "lab_repo_root": str(ROOT),
}


# ----------------------------------------------------------------------------- rendering
def _env() -> jinja2.Environment:
    # Ansible's template module: trim_blocks on, lstrip_blocks off, undefined is an error,
    # and ansible's core filters and tests (bool, to_json, match, ...).
    env = jinja2.Environment(
        trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    # (jinja's own `default` is kept: ansible's expects its templar's undefined type)
    env.filters.update(
        {k: f for k, f in AnsibleFilters().filters().items() if k not in ("default", "d")}
    )
    env.tests.update(AnsibleTests().tests())
    return env


def role_vars(*roles: str, **overrides: Any) -> dict[str, Any]:
    """The roles' defaults over the kind inventory's lab vars, templated values resolved."""
    values: dict[str, Any] = dict(LAB_VARS)
    for role in roles:
        values.update(yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()))
    values.update(overrides)
    env = _env()
    for _ in range(5):  # defaults refer to lab vars and to each other
        for key, value in values.items():
            if isinstance(value, str) and "{{" in value:
                values[key] = env.from_string(value).render(values)
    return values


def render(role: str, template: str, **overrides: Any) -> str:
    text = (ROOT / "roles" / role / "templates" / template).read_text()
    return _env().from_string(text).render(role_vars(*CLUSTER_ROLES, **overrides))


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def k8s_version() -> str:
    """The Kubernetes release of the pinned kind node image, as kubernetes-validate names it."""
    image = role_vars("kind_cluster")["kind_cluster_node_image"]
    tag = image.split(":", 1)[1].split("@", 1)[0]  # v1.35.8
    major, minor, _ = tag.lstrip("v").split(".")
    return f"{major}.{minor}.0"


def validate(doc: dict) -> None:
    """Raise with the document, the path and the reason when it is not valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    schema = cluster_schemas.CUSTOM.get(key)  # type: ignore[arg-type]
    if schema is not None:
        jsonschema.Draft202012Validator(schema).validate(doc)
    else:
        kubernetes_validate.validate(doc, k8s_version(), strict=True)


def validate_all(text: str) -> list[dict]:
    docs = documents(text)
    assert docs, "the template rendered no document"
    for doc in docs:
        validate(doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


# ----------------------------------------------------------------------------- coverage
# Manifest templates of these roles that are not cluster manifests: the VM install's
# watched-directory services (systemd agent, lab_backend vm), checked with that install.
NOT_CLUSTER = {("kmesh_node", "services.yaml.j2")}


def test_every_cluster_template_is_rendered_here():
    shipped = {
        (role, p.name)
        for role in CLUSTER_ROLES
        for p in (ROOT / "roles" / role / "templates").glob("*.yaml.j2")
    }
    assert shipped - NOT_CLUSTER == TEMPLATES, "add new templates to TEMPLATES and to a test below"


def test_validation_targets_the_pinned_kubernetes_release():
    assert k8s_version() == "1.35.0"
    # kubernetes-validate ships that release's schemas (offline).
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, k8s_version(), True
    )


# ----------------------------------------------------------------------------- kind
@pytest.mark.parametrize(
    ("mode", "workers"), list(itertools.product(["iptables", "nftables", "none"], [0, 1, 3]))
)
def test_kind_config(mode, workers):
    text = render(
        "kind_cluster",
        "kind-config.yaml.j2",
        kind_cluster_kube_proxy_mode=mode,
        kind_cluster_workers=workers,
    )
    (cluster,) = validate_all(text)
    defaults = role_vars("kind_cluster")
    assert cluster["networking"]["kubeProxyMode"] == mode
    assert cluster["networking"]["podSubnet"] == defaults["kind_cluster_pod_cidr"]
    assert [n["role"] for n in cluster["nodes"]] == ["control-plane"] + ["worker"] * workers
    for node in cluster["nodes"]:
        assert node["image"] == defaults["kind_cluster_node_image"]
        # bcc's headers reach the DaemonSet through the nodes.
        assert {"hostPath": "/usr/src", "containerPath": "/usr/src", "readOnly": True} in node[
            "extraMounts"
        ]


# ----------------------------------------------------------------------------- istio
@pytest.mark.parametrize(
    ("dataplane", "mtls", "policy"),
    list(itertools.product(["sidecar", "none"], [True, False], [True, False])),
)
def test_istio_manifests(dataplane, mtls, policy):
    opts = {"istio_dataplane": dataplane, "istio_mtls": mtls, "istio_policy": policy}
    (operator,) = validate_all(render("istio", "istio-operator.yaml.j2", **opts))
    v = role_vars("istio")
    assert operator["spec"]["tag"] == v["istio_version"]
    ambient = operator["spec"]["values"].get("pilot", {}).get("env", {}).get("PILOT_ENABLE_AMBIENT")
    assert ambient == ("true" if dataplane == "none" else None)

    text = render("istio", "policy.yaml.j2", **opts)
    docs = [validate(d) or d for d in documents(text)]
    kinds = sorted(d["kind"] for d in docs)
    expected = (["PeerAuthentication"] if mtls else []) + (
        ["AuthorizationPolicy", "DestinationRule", "VirtualService"] if policy else []
    )
    assert kinds == sorted(expected)
    if mtls:
        (pa,) = by_kind(docs, "PeerAuthentication")
        assert pa["spec"]["mtls"]["mode"] == "STRICT"
    if policy:
        (ap,) = by_kind(docs, "AuthorizationPolicy")
        (rule,) = ap["spec"]["rules"]
        # seed 003: only GET /get on port 80 from the client's service account
        assert rule["from"][0]["source"]["principals"] == [
            "cluster.local/ns/lab-client/sa/fortio-client"
        ]
        assert rule["to"][0]["operation"] == {
            "methods": ["GET"],
            "paths": ["/get"],
            "ports": ["80"],
        }
        (vs,) = by_kind(docs, "VirtualService")
        assert vs["spec"]["http"][0]["timeout"] == "2s"
        (dr,) = by_kind(docs, "DestinationRule")
        assert dr["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["connectTimeout"] == "2s"
        assert ("tls" in dr["spec"]["trafficPolicy"]) == mtls


# ----------------------------------------------------------------------------- upstream Kmesh
@pytest.mark.parametrize("mode", ["dual-engine", "kernel-native"])
def test_kmesh_upstream_values(mode):
    values = yaml.safe_load(render("kmesh_upstream", "values.yaml.j2", kmesh_upstream_mode=mode))
    jsonschema.Draft202012Validator(cluster_schemas.KMESH_VALUES).validate(values)
    kmesh = values["deploy"]["kmesh"]
    assert kmesh["containers"]["kmeshDaemonArgs"].startswith(f"--mode={mode} ")
    assert kmesh["image"]["tag"] == role_vars("kmesh_upstream")["kmesh_upstream_version"]


# ----------------------------------------------------------------------------- workloads
@pytest.mark.parametrize(("cpu_m", "servers"), list(itertools.product([0, 500], [1, 3])))
def test_fortio_workloads(cpu_m, servers):
    opts = {
        "cluster_workloads_client_cpu_m": cpu_m,
        "cluster_workloads_server_cpu_m": cpu_m,
        "cluster_workloads_servers": servers,
    }
    namespaces = validate_all(render("cluster_workloads", "namespaces.yaml.j2", **opts))
    assert sorted(d["metadata"]["name"] for d in namespaces) == sorted(
        ["lab-client", "lab-server", services.NAMESPACE]
    )
    docs = validate_all(render("cluster_workloads", "fortio.yaml.j2", **opts))
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    server = deployments["fortio-server"]["spec"]
    assert server["replicas"] == servers
    container = server["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == 80
    limits = container["resources"].get("limits")
    assert limits == ({"cpu": f"{cpu_m}m", "memory": "512Mi"} if cpu_m else None)
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == 80
    client = deployments["fortio-client"]["spec"]["template"]["spec"]
    # kmesh_lab/kubeexec.py execs into container "fortio"; istio allows this account.
    assert client["containers"][0]["name"] == "fortio"
    assert client["serviceAccountName"] == role_vars("istio")["istio_client_service_account"]


def test_roles_agree_on_namespaces_and_ranges():
    v = role_vars(*CLUSTER_ROLES)
    assert v["istio_client_namespace"] == v["cluster_workloads_client_namespace"]
    assert v["istio_server_namespace"] == v["cluster_workloads_server_namespace"]
    assert sorted(v["kmesh_upstream_namespaces"]) == sorted(
        [v["cluster_workloads_client_namespace"], v["cluster_workloads_server_namespace"]]
    )
    bulk = ipaddress.ip_network(v["cluster_workloads_bulk_cidr"])
    assert bulk.subnet_of(ipaddress.ip_network(v["kind_cluster_service_cidr"]))
    # kind's kube-dns (10th address of the service range) is not a bulk service address.
    dns = ipaddress.ip_network(v["kind_cluster_service_cidr"]).network_address + 10
    assert dns not in bulk


def test_bulk_service_batches_validate():
    batches = cluster_services.batches(1001, ["10.244.1.5", "10.244.2.9"], endpoints=3)
    assert [len(b) // 2 for b in batches] == [500, 500, 1]
    for doc in batches[0][:4] + batches[-1]:
        validate(doc)
    first = batches[0][0]
    assert first["metadata"] == {"name": "svc-00000", "namespace": "lab"}
    assert first["spec"]["clusterIP"] == "10.100.0.10"


# ----------------------------------------------------------------------------- kmesh_node
@pytest.mark.parametrize(
    ("apiserver", "loops", "lb", "accelerate"),
    list(
        itertools.product(
            ["", "kmesh-lab-control-plane"], [0, 65535], ["random", "round_robin"], [False, True]
        )
    ),
)
def test_kmesh_node_daemonset(apiserver, loops, lb, accelerate):
    docs = validate_all(
        render(
            "kmesh_node",
            "daemonset.yaml.j2",
            kmesh_node_apiserver_host=apiserver,
            kmesh_node_stress_loops=loops,
            kmesh_node_lb=lb,
            kmesh_node_accelerate=accelerate,
        )
    )
    assert sorted(d["kind"] for d in docs) == sorted(
        ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]
    )
    (role,) = by_kind(docs, "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert {"list", "watch"} <= rules[(("",), ("services",))]
    assert {"list", "watch"} <= rules[(("discovery.k8s.io",), ("endpointslices",))]
    (ds,) = by_kind(docs, "DaemonSet")
    pod = ds["spec"]["template"]
    spec = pod["spec"]
    assert spec["hostNetwork"] is True
    (agent,) = spec["containers"]
    args = agent["args"]
    assert args[:3] == ["run", "--source", "kubernetes"]
    assert args[args.index("--lb") + 1] == lb
    assert args[args.index("--stress-loops") + 1] == str(loops)
    assert ("--accelerate" in args) == accelerate
    port = agent["ports"][0]["containerPort"]
    assert port == 15020
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert agent["readinessProbe"]["httpGet"]["port"] == port
    assert args[args.index("--metrics") + 1] == f"0.0.0.0:{port}"
    host_paths = {v["hostPath"]["path"] for v in spec["volumes"]}
    assert {"/sys/fs/bpf", "/sys/fs/cgroup", "/lib/modules", "/usr/src"} <= host_paths
    env = {e["name"]: e["value"] for e in agent.get("env", [])}
    assert env == (
        {"KUBERNETES_SERVICE_HOST": apiserver, "KUBERNETES_SERVICE_PORT": "6443"}
        if apiserver
        else {}
    )


# ----------------------------------------------------------------------------- negative
def test_malformed_builtin_manifest_names_the_field():
    (ds,) = by_kind(documents(render("kmesh_node", "daemonset.yaml.j2")), "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "metrics"
    with pytest.raises(kubernetes_validate.ValidationError, match="containerPort"):
        validate(ds)
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True  # a typo is an unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(ds)


@pytest.mark.parametrize(
    ("template", "kind", "path", "bad"),
    [
        ("policy.yaml.j2", "VirtualService", ["spec", "http", 0, "timeout"], "2 seconds"),
        ("policy.yaml.j2", "AuthorizationPolicy", ["spec", "action"], "PERMIT"),
        (
            "policy.yaml.j2",
            "AuthorizationPolicy",
            ["spec", "rules", 0, "to", 0, "operation", "ports"],
            [80],
        ),
        ("policy.yaml.j2", "PeerAuthentication", ["spec", "mtls", "mode"], "strict"),
        ("kind-config.yaml.j2", "Cluster", ["networking", "kubeProxyMode"], "ebpf"),
        ("kind-config.yaml.j2", "Cluster", ["nodes", 0, "image"], "kindest/node:v1.35.8"),
    ],
)
def test_malformed_custom_resource_is_rejected(template, kind, path, bad):
    role = "kind_cluster" if template.startswith("kind") else "istio"
    (doc,) = by_kind(documents(render(role, template)), kind)
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError) as err:
        validate(doc)
    assert str(path[-1]) in str(err.value.absolute_path) or str(path[-1]) in err.value.message


def test_unknown_field_in_custom_resource_is_rejected():
    (vs,) = by_kind(documents(render("istio", "policy.yaml.j2")), "VirtualService")
    vs["spec"]["http"][0]["timout"] = "2s"
    with pytest.raises(jsonschema.ValidationError, match="timout"):
        validate(vs)


def test_missing_variable_is_named():
    with pytest.raises(jinja2.UndefinedError, match="kmesh_node_namespace"):
        text = (ROOT / "roles/kmesh_node/templates/daemonset.yaml.j2").read_text()
        v = role_vars(*CLUSTER_ROLES)
        del v["kmesh_node_namespace"]
        _env().from_string(text).render(v)


def test_bad_server_address_is_named():
    with pytest.raises(ValueError, match="not an IPv4 address"):
        cluster_services.batches(3, ["10.244.1.5", "pod-a"])
    with pytest.raises(ValueError, match="use a larger CIDR"):
        cluster_services.batches(300, ["10.244.1.5"], cidr="10.100.0.0/24")


# ----------------------------------------------------------------------------- through Ansible
def _ansible(args: list[str], tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    return subprocess.Popen(
        [str(PLAYBOOK), "-i", "inventories/kind", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.timeout(300)
def test_ansible_renders_the_same_and_fails_early_here(tmp_path):
    """One batch of ansible-playbook runs, in parallel:

    - cluster_render.yml for real with non-default options: what Ansible writes equals what
      this module renders, and validates;
    - cluster_render.yml in check mode: runs without a cluster and writes nothing;
    - cluster.yml with a bad variable: the role's argument spec names it;
    - cluster.yml with a bad value: the preflight names it before looking for tools;
    - cluster.yml here: the preflight names what is missing (container engine, kind).
    """
    options = {
        "kind_cluster_kube_proxy_mode": "none",
        "kind_cluster_workers": 1,
        "istio_mtls": False,
        "kmesh_upstream_mode": "kernel-native",
        "cluster_workloads_client_cpu_m": 0,
        "kmesh_node_apiserver_host": "kmesh-lab-control-plane",
    }
    real, check = tmp_path / "real", tmp_path / "check"
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {**options, "lab_state_dir": str(real), "kind_cluster_config_dir": str(real / "kind")}
        )
    )
    runs = {
        "render": _ansible(["playbooks/cluster_render.yml", "-e", f"@{extra}"], tmp_path),
        "check": _ansible(
            [
                "--check",
                "playbooks/cluster_render.yml",
                "-e",
                f"lab_state_dir={check}",
                "-e",
                f"kind_cluster_config_dir={check}/kind",
            ],
            tmp_path,
        ),
        "bad_choice": _ansible(
            ["playbooks/cluster.yml", "-e", "kind_cluster_kube_proxy_mode=ipvs-please"], tmp_path
        ),
        "bad_value": _ansible(
            ["playbooks/cluster.yml", "-e", "kind_cluster_pod_cidr=10.244.0.0"], tmp_path
        ),
        "here": _ansible(["playbooks/cluster.yml"], tmp_path),
    }
    out = {name: p.communicate()[0] for name, p in runs.items()}
    rc = {name: p.returncode for name, p in runs.items()}

    assert rc["render"] == 0, out["render"][-3000:]
    rendered = {
        ("kind_cluster", "kind-config.yaml.j2"): real / "kind" / "kmesh-lab.yaml",
        ("istio", "istio-operator.yaml.j2"): real / "istio" / "istio-operator.yaml",
        ("istio", "policy.yaml.j2"): real / "istio" / "policy.yaml",
        ("kmesh_upstream", "values.yaml.j2"): real / "kmesh-upstream" / "values.yaml",
        ("cluster_workloads", "namespaces.yaml.j2"): real / "cluster" / "namespaces.yaml",
        ("cluster_workloads", "fortio.yaml.j2"): real / "cluster" / "fortio.yaml",
        ("kmesh_node", "daemonset.yaml.j2"): real / "kmesh-node" / "daemonset.yaml",
    }
    assert set(rendered) == TEMPLATES
    for (role, template), path in rendered.items():
        ours = documents(render(role, template, **options, lab_state_dir=str(real)))
        theirs = documents(path.read_text())
        assert theirs == ours, f"{role}/{template}: Ansible renders differently"
        if template == "values.yaml.j2":
            jsonschema.Draft202012Validator(cluster_schemas.KMESH_VALUES).validate(theirs[0])
        else:
            for doc in theirs:
                validate(doc)

    assert rc["check"] == 0, out["check"][-3000:]
    assert not check.exists(), "check mode wrote files"

    assert rc["bad_choice"] != 0
    assert "kind_cluster_kube_proxy_mode" in out["bad_choice"]
    assert "ipvs-please" in out["bad_choice"]

    assert rc["bad_value"] != 0
    assert "kind_cluster_pod_cidr" in out["bad_value"] and "IPv4 CIDRs" in out["bad_value"]

    # This machine has no container engine daemon and no kind: said plainly, with the fix.
    assert rc["here"] != 0
    assert "Missing here:" in out["here"], out["here"][-3000:]
    assert "kind-linux-amd64" in out["here"] or "docker info" in out["here"]


def test_bulk_batch_files_are_rewritten_only_when_they_change(tmp_path):
    docs = cluster_services.batches(1200, ["10.244.1.5"])
    files, changed = cluster_services.write_batches(tmp_path, docs)
    assert [Path(f).name for f in files] == [
        "batch-00000.yaml",
        "batch-00001.yaml",
        "batch-00002.yaml",
    ]
    assert changed == files
    assert cluster_services.write_batches(tmp_path, docs) == (files, [])
    files, changed = cluster_services.write_batches(
        tmp_path, cluster_services.batches(400, ["10.244.1.5"])
    )
    assert [Path(f).name for f in files] == ["batch-00000.yaml"]
    assert sorted(Path(f).name for f in changed) == [
        "batch-00000.yaml",
        "batch-00001.yaml",
        "batch-00002.yaml",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch-00000.yaml"]


# ----------------------------------------------------------------------------- agent image
def test_agent_image_has_what_the_agent_imports():
    """deploy/kmesh-node/Containerfile: the same pinned Python deps as requirements.txt, a
    package for every third-party module kmesh_node imports, and the build context
    (.dockerignore) keeps what it copies."""
    containerfile = (ROOT / "deploy/kmesh-node/Containerfile").read_text()
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    image_pins = dict(re.findall(r"([A-Za-z0-9_.-]+)==([0-9][^\s\\]*)", containerfile))
    assert image_pins, "the Containerfile pins its pip packages"
    for name, version in image_pins.items():
        assert pins.get(name) == version, (
            f"{name}: image {version}, requirements.txt {pins.get(name)}"
        )
    imported = set()
    for path in (ROOT / "kmesh_node").rglob("*.py"):
        imported |= set(re.findall(r"^\s*(?:from|import) ([a-z_]+)", path.read_text(), re.M))
    provided = {
        "bcc": "python3-bpfcc",
        "yaml": "python3-yaml",
        "psutil": "python3-psutil",
        "kubernetes": "kubernetes==",
        "prometheus_client": "prometheus-client==",
        "inotify_simple": "inotify_simple==",
    }
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "kmesh_node"}
    assert third_party <= set(provided), (
        f"not installed in the image: {third_party - set(provided)}"
    )
    for module in third_party:
        assert provided[module] in containerfile, module
    copied = re.findall(r"^COPY (\S+)/ ", containerfile, re.M)
    assert sorted(copied) == ["bpf", "kmesh_node"]
    ignore = (ROOT / ".dockerignore").read_text().split()
    for path in copied:
        assert f"!{path}/" in ignore
