"""JSON schemas for the documents kubernetes-validate cannot check: custom resources and tool
configs the cluster roles render (it ships schemas of built-in Kubernetes kinds only).

Each schema is written by hand from the upstream project's documented fields, for the
versions the roles pin, and is deliberately closed (additionalProperties: false) on the
levels the lab writes, so a misspelt or misplaced field fails; open objects are the ones
upstream documents as free-form (Istio's `values`, `meshConfig`).

- kind `Cluster` (kind.x-k8s.io/v1alpha4): kind's configuration reference
  (sigs.k8s.io/kind/pkg/apis/config/v1alpha4 types: Cluster, Networking, Node, Mount).
- `IstioOperator` (install.istio.io/v1alpha1): istioctl's install API (IstioOperatorSpec:
  profile, hub, tag, revision, meshConfig, components, values).
- `PeerAuthentication`, `AuthorizationPolicy` (security.istio.io/v1) and `VirtualService`,
  `DestinationRule` (networking.istio.io/v1): istio/api reference docs of those CRDs.
- Kmesh chart values: kmesh-net/kmesh deploy/charts/kmesh-helm/values.yaml (the keys it
  defines; the chart has no values.schema.json).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

DURATION = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"}
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
CIDR = {"type": "string", "pattern": r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$"}


def closed(properties: dict[str, Any], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


METADATA = closed(
    {"name": NAME, "namespace": NAME, "labels": LABELS, "annotations": LABELS}, ["name"]
)
NS_METADATA = closed(
    {"name": NAME, "namespace": NAME, "labels": LABELS, "annotations": LABELS},
    ["name", "namespace"],
)


def resource(api_version: str, kind: str, spec: Schema, metadata: Schema = NS_METADATA) -> Schema:
    return closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": spec,
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


KIND_MOUNT = closed(
    {
        "hostPath": {"type": "string", "pattern": "^/"},
        "containerPath": {"type": "string", "pattern": "^/"},
        "readOnly": {"type": "boolean"},
        "selinuxRelabel": {"type": "boolean"},
        "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
    },
    ["hostPath", "containerPath"],
)

KIND_CLUSTER = closed(
    {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": NAME,
        "featureGates": {"type": "object"},
        "runtimeConfig": {"type": "object"},
        "kubeadmConfigPatches": STRINGS,
        "containerdConfigPatches": STRINGS,
        "networking": closed(
            {
                "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
                "apiServerAddress": {"type": "string"},
                "apiServerPort": {"type": "integer"},
                "podSubnet": CIDR,
                "serviceSubnet": CIDR,
                "disableDefaultCNI": {"type": "boolean"},
                "kubeProxyMode": {"enum": ["iptables", "nftables", "ipvs", "none"]},
                "dnsSearch": STRINGS,
            }
        ),
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": closed(
                {
                    "role": {"enum": ["control-plane", "worker"]},
                    "image": {"type": "string", "pattern": r"^[^@\s]+@sha256:[0-9a-f]{64}$"},
                    "labels": LABELS,
                    "extraMounts": {"type": "array", "items": KIND_MOUNT},
                    "extraPortMappings": {"type": "array", "items": {"type": "object"}},
                    "kubeadmConfigPatches": STRINGS,
                },
                ["role"],
            ),
            # The control plane comes first (in its own allOf: beside "items", "prefixItems"
            # would exempt the first node from the node schema).
            "allOf": [{"prefixItems": [{"properties": {"role": {"const": "control-plane"}}}]}],
        },
    },
    ["kind", "apiVersion", "nodes"],
)

ISTIO_COMPONENT = {
    "type": "object",
    "properties": {"enabled": {"type": "boolean"}, "k8s": {"type": "object"}},
}
ISTIO_GATEWAY = closed(
    {
        "name": NAME,
        "namespace": NAME,
        "enabled": {"type": "boolean"},
        "label": LABELS,
        "k8s": {"type": "object"},
    },
    ["name"],
)
ISTIO_OPERATOR = closed(
    {
        "apiVersion": {"const": "install.istio.io/v1alpha1"},
        "kind": {"const": "IstioOperator"},
        "metadata": {"type": "object"},
        "spec": closed(
            {
                "profile": {
                    "enum": ["default", "demo", "minimal", "empty", "ambient", "remote", "preview"]
                },
                "hub": {"type": "string"},
                "tag": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+"},
                "revision": {"type": "string"},
                "namespace": NAME,
                "meshConfig": {"type": "object"},
                "values": {"type": "object"},
                "unvalidatedValues": {"type": "object"},
                "components": closed(
                    {
                        "base": ISTIO_COMPONENT,
                        "pilot": ISTIO_COMPONENT,
                        "cni": ISTIO_COMPONENT,
                        "ztunnel": ISTIO_COMPONENT,
                        "ingressGateways": {"type": "array", "items": ISTIO_GATEWAY},
                        "egressGateways": {"type": "array", "items": ISTIO_GATEWAY},
                    }
                ),
            }
        ),
    },
    ["apiVersion", "kind", "spec"],
)

SELECTOR = closed({"matchLabels": LABELS})
PEER_AUTHENTICATION = resource(
    "security.istio.io/v1",
    "PeerAuthentication",
    closed(
        {
            "selector": SELECTOR,
            "mtls": closed({"mode": {"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}}),
            "portLevelMtls": {"type": "object"},
        }
    ),
)

PORTS = {"type": "array", "items": {"type": "string", "pattern": r"^[0-9]{1,5}$"}}
AUTHORIZATION_POLICY = resource(
    "security.istio.io/v1",
    "AuthorizationPolicy",
    closed(
        {
            "selector": SELECTOR,
            "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
            "provider": {"type": "object"},
            "rules": {
                "type": "array",
                "items": closed(
                    {
                        "from": {
                            "type": "array",
                            "items": closed(
                                {
                                    "source": closed(
                                        {
                                            k: STRINGS
                                            for k in (
                                                "principals",
                                                "notPrincipals",
                                                "requestPrincipals",
                                                "notRequestPrincipals",
                                                "namespaces",
                                                "notNamespaces",
                                                "ipBlocks",
                                                "notIpBlocks",
                                                "remoteIpBlocks",
                                                "notRemoteIpBlocks",
                                                "serviceAccounts",
                                                "notServiceAccounts",
                                            )
                                        }
                                    )
                                },
                                ["source"],
                            ),
                        },
                        "to": {
                            "type": "array",
                            "items": closed(
                                {
                                    "operation": closed(
                                        {
                                            "hosts": STRINGS,
                                            "notHosts": STRINGS,
                                            "ports": PORTS,
                                            "notPorts": PORTS,
                                            "methods": {
                                                "type": "array",
                                                "items": {"pattern": "^[A-Z]+$"},
                                            },
                                            "notMethods": STRINGS,
                                            "paths": {"type": "array", "items": {"pattern": "^/"}},
                                            "notPaths": STRINGS,
                                        }
                                    )
                                },
                                ["operation"],
                            ),
                        },
                        "when": {"type": "array", "items": {"type": "object"}},
                    }
                ),
            },
        }
    ),
)

DESTINATION = closed(
    {
        "host": {"type": "string", "minLength": 1},
        "subset": {"type": "string"},
        "port": closed({"number": {"type": "integer", "minimum": 1, "maximum": 65535}}),
    },
    ["host"],
)
VIRTUAL_SERVICE = resource(
    "networking.istio.io/v1",
    "VirtualService",
    closed(
        {
            "hosts": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "gateways": STRINGS,
            "exportTo": STRINGS,
            "http": {
                "type": "array",
                "items": closed(
                    {
                        "name": {"type": "string"},
                        "match": {"type": "array", "items": {"type": "object"}},
                        "route": {
                            "type": "array",
                            "minItems": 1,
                            "items": closed(
                                {"destination": DESTINATION, "weight": {"type": "integer"}},
                                ["destination"],
                            ),
                        },
                        "timeout": DURATION,
                        "retries": {"type": "object"},
                        "fault": {"type": "object"},
                    }
                ),
            },
            "tcp": {"type": "array"},
            "tls": {"type": "array"},
        },
        ["hosts"],
    ),
)

DESTINATION_RULE = resource(
    "networking.istio.io/v1",
    "DestinationRule",
    closed(
        {
            "host": {"type": "string", "minLength": 1},
            "exportTo": STRINGS,
            "subsets": {"type": "array"},
            "trafficPolicy": closed(
                {
                    "connectionPool": closed(
                        {
                            "tcp": closed(
                                {
                                    "maxConnections": {"type": "integer"},
                                    "connectTimeout": DURATION,
                                    "tcpKeepalive": {"type": "object"},
                                }
                            ),
                            "http": {"type": "object"},
                        }
                    ),
                    "loadBalancer": {"type": "object"},
                    "outlierDetection": {"type": "object"},
                    "tls": closed(
                        {"mode": {"enum": ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]}},
                        ["mode"],
                    ),
                }
            ),
        },
        ["host"],
    ),
)

KMESH_VALUES = closed(
    {
        "deploy": closed(
            {
                "kmesh": closed(
                    {
                        "env": closed(
                            {"xdsAddress": {"type": "string", "pattern": r"^[^:\s]+:[0-9]+$"}}
                        ),
                        "image": closed(
                            {
                                "repository": {"type": "string", "minLength": 1},
                                "tag": {"type": "string", "pattern": r"^v[0-9]+\.[0-9]+\.[0-9]+"},
                            },
                            ["repository", "tag"],
                        ),
                        "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                        "containers": closed(
                            {
                                "kmeshDaemonArgs": {
                                    "type": "string",
                                    "pattern": r"^--mode=(dual-engine|kernel-native)( |$)",
                                }
                            },
                            ["kmeshDaemonArgs"],
                        ),
                        "resources": {"type": "object"},
                    },
                    ["image", "containers"],
                )
            },
            ["kmesh"],
        ),
        "kubernetesClusterDomain": {"type": "string"},
        "fullnameOverride": {"type": "string"},
    },
    ["deploy"],
)

# (apiVersion, kind) -> schema, for documents that are not built-in Kubernetes kinds.
CUSTOM: dict[tuple[str, str], Schema] = {
    ("kind.x-k8s.io/v1alpha4", "Cluster"): KIND_CLUSTER,
    ("install.istio.io/v1alpha1", "IstioOperator"): ISTIO_OPERATOR,
    ("security.istio.io/v1", "PeerAuthentication"): PEER_AUTHENTICATION,
    ("security.istio.io/v1", "AuthorizationPolicy"): AUTHORIZATION_POLICY,
    ("networking.istio.io/v1", "VirtualService"): VIRTUAL_SERVICE,
    ("networking.istio.io/v1", "DestinationRule"): DESTINATION_RULE,
}
