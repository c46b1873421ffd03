"""Kubernetes manifests of a dpunet deployment, from one small `DeployValues`.

`render(values)` gives the install manifests (namespace, accounts, RBAC, config maps, the
controller and OVN central on the control plane, `dpunet-host` on `k8s.ovn.org/dpu-host=`
nodes, `dpunet-dpu` on `k8s.ovn.org/dpu=` nodes, `dpunet-node` on full nodes and, with
multus, the seed's NetworkAttachmentDefinition); `dpu_static_pod` is the DPU agent for a
DPU that is not a Kubernetes node; `example_pod` is the seed's `ovs-offload-pod1`.
Defaults are the seed's cluster (docs/kubernetes.md maps every value to it).
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dpunet import __version__
from dpunet.cni import wire
from dpunet.hw.pools import check_resource_prefix, parse_function_ranges

Manifest = dict[str, Any]

APP = "dpunet"
CNI_TYPE = "dpunet-cni"
CONTROLLER_PORT = 9477
DPU_HOST_LABEL = "k8s.ovn.org/dpu-host"
DPU_LABEL = "k8s.ovn.org/dpu"
RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
TOKEN_AUDIENCE = "dpunet"
TOKEN_DIR = "/var/run/secrets/dpunet"
DPU_TOKENS_SECRET = "dpunet-dpu-tokens"  # key `tokens`: the controller's dpu:<chassis> lines
DPU_TOKEN_SECRET = "dpunet-dpu-token"  # one key per DPU node name: that DPU's token
DPU_TOKENS_DIR = "/etc/dpunet/dpu-tokens"
DPU_TOKEN_HOST_FILE = "/etc/dpunet/dpu-token"  # a static pod's DPU: its token on the DPU
DPU_TLS_HOST_DIR = "/etc/dpunet/tls"  # a static pod's DPU: its TLS files (TLS_FILES' names)
DPU_LEASE_INTERVAL = 4.0  # well under a third of the controller's dpu_lease_duration (15 s)
SECRET_MODE = 0o400  # token files must not be readable by group or others
CNI_LIB_DIR = "/opt/dpunet/cni"
TLS_DIR = "/etc/dpunet/tls"  # a component's Secret dpunet-tls-<component>: the three files below
TLS_FILES = {"private_key": "privkey.pem", "certificate": "cert.pem", "ca_cert": "ca-cert.pem"}


class DeployValues(BaseModel):
    """The few facts a deployment needs (`dpunet k8s render --values FILE`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(
        default=f"localhost/dpunet:{__version__}",
        min_length=1,
        description="dpunet image (`make image` builds this name; a bare `dpunet:TAG` would be "
        "looked up as docker.io/library/dpunet)",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    namespace: str = Field(default="dpunet", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    api_server: str = Field(
        default="https://192.168.40.111:6443",
        description="the API server as nodes reach it (the seed runs without kube-proxy, so "
        "pods on the host network cannot use the kubernetes Service)",
    )
    cluster_cidr: IPv4Network = IPv4Network("10.233.64.0/18")
    node_prefix: int = Field(default=24, ge=8, le=29, strict=True)
    service_cidr: IPv4Network = IPv4Network("10.96.0.0/12")
    ovn_central: IPv4Address | None = Field(
        default=None, description="OVN NB/SB and the controller's address; default: API server's"
    )
    deploy_ovn_central: bool = Field(
        default=True, strict=True, description="run OVN NB/SB/northd pods"
    )
    gateway_next_hop: IPv4Address | None = Field(
        default=IPv4Address("192.168.40.254"),
        description="the nodes' gateway next hop (the seed's ovn-gw-nexthop); per node: the "
        "dpunet.io/gateway-next-hop annotation",
    )
    resource_name: str = Field(default="mellanox.com/mlnx_sriov_cx6")
    pf: str = Field(default="enp2s0f0np0", min_length=1, max_length=15)
    mgmt_vf: int = Field(default=0, ge=0, strict=True)
    pool_vfs: str = Field(default="1-2", description="VF indices of `pf` in the pool")
    multus: bool = Field(
        default=True, strict=True, description="render the seed's NetworkAttachmentDefinition"
    )
    nad_type: Literal["ovn-k8s-cni-overlay", "dpunet-cni"] = Field(
        default="ovn-k8s-cni-overlay",
        description="the NAD's CNI type: the seed's (dpunet-cni is installed under both names)",
    )
    full_node_selector: dict[str, str] = Field(
        default={"node-role.kubernetes.io/control-plane": ""},
        description="nodes running OVS themselves (dpunet-node)",
    )
    example_namespace: str = "default"

    @field_validator("resource_name")
    @classmethod
    def _resource(cls, value: str) -> str:
        prefix, slash, name = value.partition("/")
        if not slash or not name:
            raise ValueError(f"{value!r} is not <prefix>/<name>")
        check_resource_prefix(prefix)
        return value

    @field_validator("pool_vfs")
    @classmethod
    def _ranges(cls, value: str) -> str:
        parse_function_ranges(value)
        return value

    @field_validator("api_server")
    @classmethod
    def _url(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"{value!r} is not https://HOST[:PORT]")
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> DeployValues:
        if self.cluster_cidr.overlaps(self.service_cidr):
            raise ValueError(f"cluster_cidr {self.cluster_cidr} overlaps {self.service_cidr}")
        if self.node_prefix < self.cluster_cidr.prefixlen:
            raise ValueError(f"node_prefix /{self.node_prefix} is wider than the cluster CIDR")
        if self.mgmt_vf in parse_function_ranges(self.pool_vfs):
            raise ValueError(f"mgmt_vf {self.mgmt_vf} is also in pool_vfs {self.pool_vfs}")
        return self

    @property
    def api_host(self) -> str:
        """The API server's host."""
        return urlsplit(self.api_server).hostname or ""

    @property
    def api_port(self) -> int:
        """The API server's port."""
        return urlsplit(self.api_server).port or 443

    @property
    def central(self) -> str:
        """Where OVN NB/SB and the controller listen."""
        return str(self.ovn_central or self.api_host)

    @property
    def resource_prefix(self) -> str:
        """`mellanox.com` of `mellanox.com/mlnx_sriov_cx6`."""
        return self.resource_name.split("/")[0]

    @property
    def resource_short(self) -> str:
        """`mlnx_sriov_cx6` of `mellanox.com/mlnx_sriov_cx6`."""
        return self.resource_name.split("/")[1]


# --- building blocks ---------------------------------------------------------------------


def _meta(values: DeployValues, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": values.namespace,
        "labels": {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": name},
        **extra,
    }


def _host_path(name: str, path: str, kind: str = "DirectoryOrCreate") -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def _mount(name: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "mountPath": path, **extra}


def _api_env(values: DeployValues) -> list[dict[str, Any]]:
    """In-cluster clients read these; the API server as nodes reach it."""
    return [
        {"name": "KUBERNETES_SERVICE_HOST", "value": values.api_host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(values.api_port)},
    ]


def _node_env() -> list[dict[str, Any]]:
    return [{"name": "DPUNET_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]


def _secret_volume(name: str, secret: str, **extra: Any) -> dict[str, Any]:
    """A Secret as files only their owner reads (the token files' rule)."""
    return {
        "name": name,
        "secret": {"secretName": secret, "defaultMode": SECRET_MODE, **extra},
    }


def tls_secret(component: str) -> str:
    """The Secret holding a component's key, certificate and the CA (`dpunet pki`)."""
    return f"dpunet-tls-{component}"


def _tls_volume(component: str) -> dict[str, Any]:
    return _secret_volume("tls", tls_secret(component))


def _tls_mount() -> dict[str, Any]:
    return _mount("tls", TLS_DIR, readOnly=True)


def _tls_files() -> dict[str, str]:
    """The TLS files in a component's config (its Secret mounted at TLS_DIR)."""
    return {key: f"{TLS_DIR}/{name}" for key, name in TLS_FILES.items()}


def _tls_options() -> list[str]:
    """An OVS/OVN daemon's options for the mounted TLS files."""
    return [f"--{key.replace('_', '-')}={path}" for key, path in _tls_files().items()]


def _token_volume() -> dict[str, Any]:
    """A ServiceAccount token for the controller (audience `dpunet`, rotated by kubelet)."""
    source = {"serviceAccountToken": {"audience": TOKEN_AUDIENCE, "path": "token"}}
    return {"name": "dpunet-token", "projected": {"sources": [source]}}


def _container(values: DeployValues, name: str, args: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": values.image,
        "imagePullPolicy": values.image_pull_policy,
        "args": args,
        **extra,
    }


def _probe(port: int, path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port, "host": "127.0.0.1"}, "periodSeconds": 10}


def _privileged() -> dict[str, Any]:
    return {"privileged": True}


def _daemonset(
    values: DeployValues, name: str, selector: dict[str, str], pod: dict[str, Any]
) -> Manifest:
    labels = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(values, name),
        "spec": {
            "selector": {"matchLabels": labels},
            # host network: no surge (a node's new pod needs the old one's ports), one
            # node's agent replaced at a time (docs/kubernetes.md, "Upgrade and rollback")
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": selector,
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    **pod,
                },
            },
        },
    }


def _config_files(values: DeployValues) -> dict[str, str]:
    controller_url = f"https://{values.central}:{CONTROLLER_PORT}"
    # the agents check the controller's certificate and show their own; their tokens say
    # who they are
    controller_tls = _tls_files()
    files: dict[str, dict[str, Any]] = {
        "controller.yaml": {
            "nb_remotes": [f"ssl:{values.central}:6641"],
            "sb_remotes": [f"ssl:{values.central}:6642"],
            "ovn_ssl": _tls_files(),
            "listen": [f"0.0.0.0:{CONTROLLER_PORT}"],
            "api_tls": _tls_files(),  # its certificate names ovn_central (dpunet pki --ip)
            "cluster_cidr": str(values.cluster_cidr),
            "node_prefix": values.node_prefix,
            "service_cidr": str(values.service_cidr),
            "mode": "kubernetes",
            "k8s_namespace": values.namespace,
            **({"k8s_next_hop": str(values.gateway_next_hop)} if values.gateway_next_hop else {}),
            "dpu_token_file": f"{DPU_TOKENS_DIR}/tokens",
            "log_format": "json",
        },
        "host.yaml": {
            "controller_url": controller_url,
            "controller_tls": controller_tls,
            "token_file": f"{TOKEN_DIR}/token",
            "pf": values.pf,
            "mgmt_vf": values.mgmt_vf,
            "pool_config": "/etc/dpunet/pools/config.json",
            "resource_prefix": values.resource_prefix,
            "device_plugin": True,
            "pod_resources": True,
            "kubelet_dir": "/var/lib/kubelet",
            "metrics_address": "127.0.0.1:9478",
            "log_format": "json",
        },
        "dpu.yaml": {
            "run_setup": False,
            "controller_url": controller_url,  # host network to host network, as SB
            "controller_tls": controller_tls,
            "token_file": f"{TOKEN_DIR}/token",
            "lease_interval": DPU_LEASE_INTERVAL,
            "sb_ssl": _tls_files(),  # SB remotes: external_ids:ovn-remote (dpu setup)
            "metrics_address": "127.0.0.1:9476",
            "log_format": "json",
        },
        "node.yaml": {
            "controller_url": controller_url,
            "controller_tls": controller_tls,
            "token_file": f"{TOKEN_DIR}/token",
            "metrics_address": "127.0.0.1:9479",
            "log_format": "json",
        },
    }
    return {name: yaml.safe_dump(body, sort_keys=False) for name, body in files.items()}


def pool_config(values: DeployValues) -> dict[str, Any]:
    """The sriov-network-device-plugin `config.json` of the seed, from the values."""
    return {
        "resourceList": [
            {
                "resourceName": values.resource_short,
                "resourcePrefix": values.resource_prefix,
                "selectors": {
                    "vendors": ["15b3"],
                    "devices": ["101e"],
                    "drivers": ["mlx5_core"],
                    "pfNames": [f"{values.pf}#{values.pool_vfs}"],
                },
            }
        ]
    }


def cni_config(name: str = "dpunet") -> dict[str, Any]:
    """The node's CNI config file (`10-dpunet.conflist`): dpunet as the default network."""
    return {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": CNI_TYPE}]}


# --- the manifests -----------------------------------------------------------------------


def _namespace(values: DeployValues) -> Manifest:
    enforce = {"pod-security.kubernetes.io/enforce": "privileged"}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": values.namespace,
            "labels": {"app.kubernetes.io/name": APP, **enforce},
        },
    }


def _accounts(values: DeployValues) -> list[Manifest]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(values, name)}
        for name in ("dpunet-controller", "dpunet-host", "dpunet-node")
    ]


def _rbac(values: DeployValues) -> list[Manifest]:
    rbac = "rbac.authorization.k8s.io/v1"
    subject = {"kind": "ServiceAccount", "name": "dpunet-controller", "namespace": values.namespace}
    # exactly what the controller's code calls (tests/lab/test_k8s_lab.py derives it from the
    # requests kmock recorded): nodes are patched by DPU registrations (the chassis
    # annotation), pods by the pod-networks annotation and read for TokenReview's pod claims
    cluster_rules = [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["networking.k8s.io"],
            "resources": ["networkpolicies"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["tokenreviews"],
            "verbs": ["create"],
        },
    ]
    lease_rules = [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "patch"],
        }
    ]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "name": "dpunet-controller"}
    cluster_meta = {"name": "dpunet-controller", "labels": {"app.kubernetes.io/name": APP}}
    return [
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": cluster_meta,
            "rules": cluster_rules,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": cluster_meta,
            "roleRef": {**role_ref, "kind": "ClusterRole"},
            "subjects": [subject],
        },
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": _meta(values, "dpunet-controller"),
            "rules": lease_rules,
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": _meta(values, "dpunet-controller"),
            "roleRef": {**role_ref, "kind": "Role"},
            "subjects": [subject],
        },
    ]


def _config_maps(values: DeployValues) -> list[Manifest]:
    pools = json.dumps(pool_config(values), indent=4) + "\n"
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(values, "dpunet-config"),
            "data": _config_files(values),
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(values, "sriovdp-config"),
            "data": {"config.json": pools},
        },
    ]


def _control_plane_pod() -> dict[str, Any]:
    return {
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists"},
        ],
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "priorityClassName": "system-cluster-critical",
    }


def _controller(values: DeployValues) -> list[Manifest]:
    labels = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": "dpunet-controller"}
    container = _container(
        values,
        "controller",
        ["controller", "run", "--config", "/etc/dpunet/controller.yaml"],
        env=_api_env(values),
        ports=[{"name": "api", "containerPort": CONTROLLER_PORT}],
        readinessProbe={
            "httpGet": {"path": "/readyz", "port": CONTROLLER_PORT, "scheme": "HTTPS"},
            "periodSeconds": 5,
        },
        livenessProbe={
            "httpGet": {"path": "/healthz", "port": CONTROLLER_PORT, "scheme": "HTTPS"},
            "periodSeconds": 10,
        },
        volumeMounts=[
            _mount("config", "/etc/dpunet/controller.yaml", subPath="controller.yaml"),
            _mount("tokens", "/etc/dpunet/controller", readOnly=True),
            _mount("dpu-tokens", DPU_TOKENS_DIR, readOnly=True),
            _tls_mount(),
        ],
    )
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(values, "dpunet-controller"),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # host network: one port per node
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        **_control_plane_pod(),
                        "serviceAccountName": "dpunet-controller",
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": "dpunet-config"}},
                            _secret_volume("tokens", "dpunet-controller-tokens", optional=True),
                            _secret_volume("dpu-tokens", DPU_TOKENS_SECRET),
                            _tls_volume("controller"),
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(values, "dpunet-controller"),
            "spec": {
                "selector": labels,
                "ports": [{"name": "api", "port": CONTROLLER_PORT, "targetPort": CONTROLLER_PORT}],
            },
        },
    ]


def _ovn_ctl_tls() -> dict[str, str]:
    """ovn-ctl's names of the TLS files (`--ovn-nb-db-ssl-key=...`)."""
    files = _tls_files()
    return {"key": files["private_key"], "cert": files["certificate"], "ca-cert": files["ca_cert"]}


def _ovn_central(values: DeployValues) -> Manifest:
    labels = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": "ovn-central"}
    mounts = [_mount("ovn-db", "/var/lib/ovn"), _mount("ovn-run", "/var/run/ovn")]
    ctl = "/usr/share/ovn/scripts/ovn-ctl"

    def db(name: str, kind: str, port: int) -> dict[str, Any]:
        """An OVN database server: unix socket in the pod, TLS only on the network."""
        tls = [f"--ovn-{kind}-db-ssl-{opt}={path}" for opt, path in _ovn_ctl_tls().items()]
        command = [
            ctl, f"run_{kind}_ovsdb", f"--db-{kind}-create-insecure-remote=no", *tls,
            "--", f"--remote=pssl:{port}",
        ]  # fmt: skip
        return _container(values, name, [], command=command, volumeMounts=[*mounts, _tls_mount()])

    northd = _container(
        values,
        "northd",
        [],
        command=[
            "ovn-northd",
            "--ovnnb-db=unix:/var/run/ovn/ovnnb_db.sock",
            "--ovnsb-db=unix:/var/run/ovn/ovnsb_db.sock",
            "-vconsole:info",
        ],
        volumeMounts=mounts,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(values, "ovn-central"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **_control_plane_pod(),
                    "automountServiceAccountToken": False,
                    "containers": [
                        db("nb-ovsdb", "nb", 6641),
                        db("sb-ovsdb", "sb", 6642),
                        northd,
                    ],
                    "volumes": [
                        _host_path("ovn-db", "/var/lib/ovn"),
                        {"name": "ovn-run", "emptyDir": {}},
                        _tls_volume("ovn-central"),
                    ],
                },
            },
        },
    }


def _install_cni(values: DeployValues) -> dict[str, Any]:
    """The init container that installs the CNI shim, its library and the conflist on the
    node (dpu-hosts and full nodes alike)."""
    return _container(
        values,
        "install-cni",
        ["k8s", "install-cni", "--lib-dir", CNI_LIB_DIR],
        securityContext=_privileged(),
        volumeMounts=[
            _mount("cni-bin", "/opt/cni/bin"),
            _mount("cni-lib", CNI_LIB_DIR),
            _mount("cni-conf", "/etc/cni/net.d"),
        ],
    )


def _host(values: DeployValues) -> Manifest:
    install = _install_cni(values)
    agent = _container(
        values,
        "dpunet-host",
        ["host", "run", "--config", "/etc/dpunet/host.yaml"],
        env=[*_node_env(), *_api_env(values)],
        securityContext=_privileged(),
        readinessProbe=_probe(9478, "/readyz"),
        livenessProbe=_probe(9478, "/healthz"),
        volumeMounts=[
            _mount("config", "/etc/dpunet/host.yaml", subPath="host.yaml"),
            _mount("pools", "/etc/dpunet/pools", readOnly=True),
            _mount("dpunet-token", TOKEN_DIR, readOnly=True),
            _tls_mount(),
            _mount("kubelet", "/var/lib/kubelet", mountPropagation="HostToContainer"),
            _mount("run-dpunet", "/run/dpunet"),
            _mount("state", "/var/lib/dpunet"),
            _mount("devinfo", "/var/run/k8s.cni.cncf.io/devinfo"),
            _mount("netns", "/var/run/netns", mountPropagation="HostToContainer"),
            _mount("sys", "/sys"),
        ],
    )
    return _daemonset(
        values,
        "dpunet-host",
        {DPU_HOST_LABEL: ""},
        {
            "serviceAccountName": "dpunet-host",
            "hostPID": True,
            "initContainers": [install],
            "containers": [agent],
            "volumes": [
                {"name": "config", "configMap": {"name": "dpunet-config"}},
                {"name": "pools", "configMap": {"name": "sriovdp-config"}},
                _token_volume(),
                _tls_volume("host"),
                _host_path("kubelet", "/var/lib/kubelet", "Directory"),
                _host_path("run-dpunet", "/run/dpunet"),
                _host_path("state", "/var/lib/dpunet"),
                _host_path("devinfo", "/var/run/k8s.cni.cncf.io/devinfo"),
                _host_path("netns", "/var/run/netns"),
                _host_path("sys", "/sys", "Directory"),
                _host_path("cni-bin", "/opt/cni/bin"),
                _host_path("cni-lib", CNI_LIB_DIR),
                _host_path("cni-conf", "/etc/cni/net.d"),
            ],
        },
    )


def _ovn_controller(values: DeployValues) -> dict[str, Any]:
    return _container(
        values,
        "ovn-controller",
        [],
        command=[
            "ovn-controller",
            "unix:/var/run/openvswitch/db.sock",
            *_tls_options(),  # SB: ssl: in external_ids:ovn-remote (dpu/node setup)
            "-vconsole:info",
            "--pidfile=/var/run/ovn/ovn-controller.pid",
        ],
        securityContext=_privileged(),
        volumeMounts=[
            _mount("ovs-run", "/var/run/openvswitch"),
            _mount("ovn-run", "/var/run/ovn"),
            _tls_mount(),
        ],
    )


def _dpu_pod_spec(values: DeployValues) -> dict[str, Any]:
    agent = _container(
        values,
        "dpunet-dpu",
        ["dpu", "run", "--config", "/etc/dpunet/dpu.yaml"],
        env=[{"name": "DPU_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        securityContext=_privileged(),
        readinessProbe=_probe(9476, "/readyz"),
        livenessProbe=_probe(9476, "/healthz"),
        volumeMounts=[
            _mount("config", "/etc/dpunet/dpu.yaml", subPath="dpu.yaml"),
            # this DPU's own key of the Secret (not every DPU's token in the agent)
            _mount("dpu-token", f"{TOKEN_DIR}/token", subPathExpr="$(DPU_NODE)", readOnly=True),
            _mount("ovs-run", "/var/run/openvswitch"),
            _mount("sys", "/sys"),
            _tls_mount(),
        ],
    )
    return {
        "automountServiceAccountToken": False,  # the DPU has no Kubernetes credentials
        "containers": [agent, _ovn_controller(values)],
        "volumes": [
            {"name": "config", "configMap": {"name": "dpunet-config"}},
            _secret_volume("dpu-token", DPU_TOKEN_SECRET),
            _host_path("ovs-run", "/var/run/openvswitch", "Directory"),
            _host_path("ovn-run", "/var/run/ovn"),
            _host_path("sys", "/sys", "Directory"),
            _tls_volume("dpu"),
        ],
    }


def _dpu(values: DeployValues) -> Manifest:
    return _daemonset(values, "dpunet-dpu", {DPU_LABEL: ""}, _dpu_pod_spec(values))


def _full_node(values: DeployValues) -> Manifest:
    install = _install_cni(values)
    agent = _container(
        values,
        "dpunet-node",
        ["node", "run", "--config", "/etc/dpunet/node.yaml"],
        env=[*_node_env(), *_api_env(values)],
        securityContext=_privileged(),
        readinessProbe=_probe(9479, "/readyz"),
        livenessProbe=_probe(9479, "/healthz"),
        volumeMounts=[
            _mount("config", "/etc/dpunet/node.yaml", subPath="node.yaml"),
            _mount("dpunet-token", TOKEN_DIR, readOnly=True),
            _tls_mount(),
            _mount("ovs-run", "/var/run/openvswitch"),
            _mount("run-dpunet", "/run/dpunet"),
            _mount("state", "/var/lib/dpunet"),
            _mount("netns", "/var/run/netns", mountPropagation="HostToContainer"),
        ],
    )
    return _daemonset(
        values,
        "dpunet-node",
        dict(values.full_node_selector),
        {
            "serviceAccountName": "dpunet-node",
            "hostPID": True,
            "initContainers": [install],
            "containers": [agent, _ovn_controller(values)],
            "volumes": [
                {"name": "config", "configMap": {"name": "dpunet-config"}},
                _token_volume(),
                _tls_volume("node"),
                _host_path("ovs-run", "/var/run/openvswitch", "Directory"),
                _host_path("ovn-run", "/var/run/ovn"),
                _host_path("run-dpunet", "/run/dpunet"),
                _host_path("state", "/var/lib/dpunet"),
                _host_path("netns", "/var/run/netns"),
                _host_path("cni-bin", "/opt/cni/bin"),
                _host_path("cni-lib", CNI_LIB_DIR),
                _host_path("cni-conf", "/etc/cni/net.d"),
            ],
        },
    )


def network_attachment_definition(values: DeployValues) -> Manifest:
    """The seed's NAD `kube-system/default`; its config is the seed's, byte for byte, with
    the default `nad_type` (the shim answers to the seed's type too)."""
    config = {
        "cniVersion": "0.3.1",
        "name": "ovn-kubernetes",
        "type": values.nad_type,
        "ipam": {},
        "dns": {},
    }
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": "default",
            "namespace": "kube-system",
            "annotations": {RESOURCE_NAME_ANNOTATION: values.resource_name},
        },
        "spec": {"config": _checked_cni_config(config)},
    }


def _checked_cni_config(config: dict[str, Any]) -> str:
    """`config` as the NAD's text, after the CNI's own checks of a network config (the
    same code the plugin runs): a NAD the plugin would refuse is never rendered."""
    text = json.dumps(config, separators=(",", ":"))
    decoded, _ = wire.decode_config(text.encode())
    wire.check_config("ADD", decoded)
    return text


def render(values: DeployValues) -> list[Manifest]:
    """The install manifests, in apply order."""
    manifests = [
        _namespace(values),
        *_accounts(values),
        *_rbac(values),
        *_config_maps(values),
        *([_ovn_central(values)] if values.deploy_ovn_central else []),
        *_controller(values),
        _host(values),
        _dpu(values),
        _full_node(values),
    ]
    if values.multus:
        manifests.append(network_attachment_definition(values))
    return manifests


def dpu_static_pod(values: DeployValues) -> Manifest:
    """`dpunet-dpu` as a static pod (`/etc/kubernetes/manifests/`) for a DPU whose kubelet
    is not part of the cluster: config, token and TLS files are files on the DPU, nothing
    comes from the API."""
    spec = _dpu_pod_spec(values)
    spec["volumes"][:2] = [
        _host_path("config", "/etc/dpunet", "Directory"),
        _host_path("dpu-token", DPU_TOKEN_HOST_FILE, "File"),
    ]
    spec["volumes"][-1] = _host_path("tls", DPU_TLS_HOST_DIR, "Directory")
    agent = spec["containers"][0]
    del agent["env"]
    agent["volumeMounts"][:2] = [
        _mount("config", "/etc/dpunet", readOnly=True),
        _mount("dpu-token", f"{TOKEN_DIR}/token", readOnly=True),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(values, "dpunet-dpu", namespace="kube-system"),
        "spec": {"hostNetwork": True, "priorityClassName": "system-node-critical", **spec},
    }


def example_pod(values: DeployValues) -> Manifest:
    """The seed's `ovs-offload-pod1`: one VF of the resource as its primary interface."""
    annotations = (
        {"v1.multus-cni.io/default-network": "kube-system/default"} if values.multus else {}
    )
    request = {values.resource_name: "1"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "ovs-offload-pod1",
            "namespace": values.example_namespace,
            **({"annotations": annotations} if annotations else {}),
        },
        "spec": {
            "containers": [
                {
                    "name": "appcntr1",
                    "image": "alpine",
                    "command": ["sleep", "604800"],
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"requests": request, "limits": request},
                }
            ]
        },
    }


def dump_all(manifests: list[Manifest]) -> str:
    """Manifests as one multi-document YAML stream."""
    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False)
