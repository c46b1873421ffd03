"""Rendered manifests: valid against the Kubernetes schemas (offline), consistent with the
daemons' settings, and the same as the committed files under deploy/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from dpunet.cli.k8s_cmds import k8s
from dpunet.cni.install import PLUGIN_NAMES
from dpunet.cni.models import parse_netconf
from dpunet.controller.config import ControllerConfig
from dpunet.deploy.manifests import (
    CNI_TYPE,
    TLS_DIR,
    DeployValues,
    cni_config,
    dpu_static_pod,
    example_pod,
    render,
)
from dpunet.dpu.config import DpuAgentConfig
from dpunet.host.config import HostAgentConfig
from dpunet.hw.pools import parse_pool_config
from dpunet.node.config import NodeAgentConfig

DEPLOY = Path(__file__).parents[2] / "deploy"
SEED_NAD_CONFIG = (  # the seed's NetworkAttachmentDefinition `default`, spec.config
    '{"cniVersion":"0.3.1","name":"ovn-kubernetes","type":"ovn-k8s-cni-overlay","ipam":{},"dns":{}}'
)
# the seed's cluster ran 1.25; the newest schemas catch removed or renamed fields
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
OTHER_VALUES = DeployValues(
    image="registry.example.com/dpunet:1.2.3",
    api_server="https://k8s.example.com",
    ovn_central="198.18.0.10",
    cluster_cidr="198.18.64.0/18",
    service_cidr="198.19.0.0/16",
    resource_name="nvidia.com/bf2_vfs",
    pf="ens1f0np0",
    mgmt_vf=3,
    pool_vfs="0-2,4-7",
    multus=False,
    deploy_ovn_central=False,
    full_node_selector={"dpunet.example.com/full": "true"},
)


def all_manifests(values: DeployValues) -> list[dict[str, Any]]:
    return [*render(values), dpu_static_pod(values), example_pod(values)]


def check_nad(manifest: dict[str, Any]) -> None:
    """The NetworkAttachmentDefinition CRD's shape (k8s.cni.cncf.io/v1) and its config."""
    assert manifest["apiVersion"] == "k8s.cni.cncf.io/v1"
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(manifest["spec"]) == {"config"}
    assert isinstance(manifest["spec"]["config"], str)
    metadata = manifest["metadata"]
    assert metadata["name"] and metadata["namespace"]
    assert all(isinstance(v, str) for v in metadata.get("annotations", {}).values())
    config = parse_netconf(json.loads(manifest["spec"]["config"]))
    assert config.type in PLUGIN_NAMES  # a name the installed shim answers to


@pytest.mark.parametrize("values", [DeployValues(), OTHER_VALUES], ids=["seed", "other"])
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates(values: DeployValues, version: str) -> None:
    for manifest in all_manifests(values):
        if manifest["kind"] == "NetworkAttachmentDefinition":
            check_nad(manifest)
        else:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_validation_is_not_vacuous() -> None:
    [host] = [m for m in render(DeployValues()) if m["kind"] == "DaemonSet"][:1]
    broken = copy.deepcopy(host)
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_seed_shapes() -> None:
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in render(DeployValues())}
    nad = manifests["NetworkAttachmentDefinition", "default"]
    assert nad["metadata"]["namespace"] == "kube-system"
    assert nad["metadata"]["annotations"] == {
        "k8s.v1.cni.cncf.io/resourceName": "mellanox.com/mlnx_sriov_cx6"
    }
    # the seed's NAD config, unchanged (the seed's `type`: the shim is installed under it)
    assert nad["spec"]["config"] == SEED_NAD_CONFIG
    other = render(DeployValues(nad_type="dpunet-cni"))[-1]
    assert json.loads(other["spec"]["config"])["type"] == CNI_TYPE
    host = manifests["DaemonSet", "dpunet-host"]["spec"]["template"]["spec"]
    assert host["nodeSelector"] == {"k8s.ovn.org/dpu-host": ""}
    assert host["hostNetwork"] and host["containers"][0]["securityContext"]["privileged"]
    paths = {v["hostPath"]["path"] for v in host["volumes"] if "hostPath" in v}
    assert {"/var/lib/kubelet", "/run/dpunet", "/opt/cni/bin", "/etc/cni/net.d", "/sys"} <= paths
    assert host["initContainers"][0]["args"][:2] == ["k8s", "install-cni"]
    dpu = manifests["DaemonSet", "dpunet-dpu"]["spec"]["template"]["spec"]
    assert dpu["nodeSelector"] == {"k8s.ovn.org/dpu": ""}
    assert dpu["automountServiceAccountToken"] is False
    pod = example_pod(DeployValues())
    assert pod["metadata"]["name"] == "ovs-offload-pod1"
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"mellanox.com/mlnx_sriov_cx6": "1"}


def volume_of(pod: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(mount, volume) giving the first container of `pod` the file `path`."""
    [mount] = [
        m
        for m in pod["containers"][0]["volumeMounts"]
        if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")
    ]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return mount, volume


@pytest.mark.parametrize("values", [DeployValues(), OTHER_VALUES], ids=["seed", "other"])
def test_dpu_leases_are_wired(values: DeployValues) -> None:
    """The controller reads the DPU tokens from their Secret (owner-only files); each DPU
    agent renews at the controller's address with its own key of the other Secret, or
    with a file on a DPU outside the cluster; no DPU pod gets Kubernetes credentials."""
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in render(values)}
    files = {
        name: yaml.safe_load(text)
        for name, text in manifests["ConfigMap", "dpunet-config"]["data"].items()
    }
    controller = ControllerConfig.model_validate(files["controller.yaml"])
    ctl_pod = manifests["Deployment", "dpunet-controller"]["spec"]["template"]["spec"]
    mount, volume = volume_of(ctl_pod, str(controller.dpu_token_file))
    assert volume["secret"] == {"secretName": "dpunet-dpu-tokens", "defaultMode": 0o400}
    assert mount["readOnly"] and str(controller.dpu_token_file).endswith("/tokens")
    assert controller.dpu_lease_duration is not None

    dpu = DpuAgentConfig.model_validate(files["dpu.yaml"])
    host = HostAgentConfig.model_validate({**files["host.yaml"], "node": "dpu-host"})
    assert dpu.controller_url == host.controller_url == f"https://{values.central}:9477"
    assert dpu.lease_interval < controller.dpu_lease_duration / 3
    daemonset = manifests["DaemonSet", "dpunet-dpu"]["spec"]["template"]["spec"]
    mount, volume = volume_of(daemonset, str(dpu.token_file))
    assert mount["mountPath"] == str(dpu.token_file) and mount["subPathExpr"] == "$(DPU_NODE)"
    assert volume["secret"] == {"secretName": "dpunet-dpu-token", "defaultMode": 0o400}
    [node_env] = daemonset["containers"][0]["env"]
    assert node_env == {
        "name": "DPU_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}
    }  # fmt: skip
    static = dpu_static_pod(values)["spec"]
    mount, volume = volume_of(static, str(dpu.token_file))
    assert volume["hostPath"] == {"path": "/etc/dpunet/dpu-token", "type": "File"}
    for pod in (daemonset, static):
        assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod


def test_seed_device_plugin_configmap_is_the_seeds() -> None:
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in render(DeployValues())}
    pools = json.loads(manifests["ConfigMap", "sriovdp-config"]["data"]["config.json"])
    config = parse_pool_config(pools)
    [resource] = config.resource_list
    assert resource.full_name == "mellanox.com/mlnx_sriov_cx6"
    [selector] = resource.selectors
    assert [e.text for e in selector.pf_names or ()] == ["enp2s0f0np0#1-2"]
    assert selector.vendors == ("15b3",) and selector.devices == ("101e",)


@pytest.mark.parametrize("values", [DeployValues(), OTHER_VALUES], ids=["seed", "other"])
def test_daemon_configs_load(values: DeployValues) -> None:
    [config_map] = [m for m in render(values) if m["metadata"]["name"] == "dpunet-config"]
    files = {name: yaml.safe_load(text) for name, text in config_map["data"].items()}
    controller = ControllerConfig.model_validate(files["controller.yaml"])
    assert controller.cluster_cidr == values.cluster_cidr
    assert controller.service_cidr == values.service_cidr
    host = HostAgentConfig.model_validate({**files["host.yaml"], "node": "dpu-host"})
    assert host.device_plugin and host.pod_resources
    assert (host.pf, host.mgmt_vf, host.resource_prefix) == (
        values.pf,
        values.mgmt_vf,
        values.resource_prefix,
    )
    NodeAgentConfig.model_validate({**files["node.yaml"], "node": "cp"})
    DpuAgentConfig.model_validate(files["dpu.yaml"])


def _pod_specs(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for m in manifests:
        if m["kind"] in ("Deployment", "DaemonSet", "Pod"):
            spec = m["spec"]
            out[m["metadata"]["name"]] = spec["template"]["spec"] if "template" in spec else spec
    return out


def _tls_secret(pod: dict[str, Any]) -> str | None:
    [volume] = [v for v in pod["volumes"] if v["name"] == "tls"] or [None]
    if volume is None:
        return None
    return str(volume["secret"]["secretName"]) if "secret" in volume else volume["hostPath"]["path"]


def test_every_hop_is_tls() -> None:
    # NB/SB listen only with pssl:, every OVN and dpunet daemon gets its own Secret mounted
    # where its config and options point, and no config asks for a plain transport
    values = DeployValues()
    pods = _pod_specs([*render(values), dpu_static_pod(values)])
    expected = {
        "ovn-central": "dpunet-tls-ovn-central",
        "dpunet-controller": "dpunet-tls-controller",
        "dpunet-dpu": "/etc/dpunet/tls",  # the static pod: files on the DPU
        "dpunet-node": "dpunet-tls-node",
        "dpunet-host": "dpunet-tls-host",
    }
    for name, secret in expected.items():
        pod = pods[name]
        assert _tls_secret(pod) == secret, name
        for container in pod["containers"]:
            if container["name"] == "northd":  # NB and SB over unix sockets in its pod
                continue
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            assert mounts[TLS_DIR]["name"] == "tls" and mounts[TLS_DIR]["readOnly"], container
    dpu_ds = next(m for m in render(values) if m["metadata"]["name"] == "dpunet-dpu")
    assert _tls_secret(dpu_ds["spec"]["template"]["spec"]) == "dpunet-tls-dpu"
    text = json.dumps(render(values))
    assert "insecure-remote=yes" not in text and "ptcp:" not in text
    for db, port in (("nb", 6641), ("sb", 6642)):
        [container] = [c for c in pods["ovn-central"]["containers"] if c["name"] == f"{db}-ovsdb"]
        assert container["command"][-1] == f"--remote=pssl:{port}"
        assert f"--ovn-{db}-db-ssl-ca-cert={TLS_DIR}/ca-cert.pem" in container["command"]
    for pod in ("dpunet-dpu", "dpunet-node"):
        [ovn] = [c for c in pods[pod]["containers"] if c["name"] == "ovn-controller"]
        assert f"--private-key={TLS_DIR}/privkey.pem" in ovn["command"]
    [config_map] = [m for m in render(values) if m["metadata"]["name"] == "dpunet-config"]
    files = {name: yaml.safe_load(text) for name, text in config_map["data"].items()}
    controller = ControllerConfig.model_validate(files["controller.yaml"])
    assert not controller.insecure and controller.nb_remotes == ["ssl:192.168.40.111:6641"]
    assert controller.ovn_ssl is not None and str(controller.ovn_ssl.ca_cert).startswith(TLS_DIR)
    controller.check_tls()  # HTTPS on 0.0.0.0, NB and SB over ssl:
    assert controller.api_tls is not None and controller.listen == ["0.0.0.0:9477"]
    dpu = DpuAgentConfig.model_validate(files["dpu.yaml"])
    assert not dpu.insecure and dpu.sb_ssl is not None
    assert dpu.plain_transports(["ssl:192.168.40.111:6642"]) == []
    assert dpu.controller_url == "https://192.168.40.111:9477" and dpu.controller_tls is not None
    for name, model in (("host.yaml", HostAgentConfig), ("node.yaml", NodeAgentConfig)):
        agent = model.model_validate({**files[name], "node": "n1"})
        assert agent.controller_url.startswith("https://") and not agent.insecure
        assert agent.controller_tls is not None
        assert str(agent.controller_tls.ca_cert) == f"{TLS_DIR}/ca-cert.pem"
    probe = pods["dpunet-controller"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["scheme"] == "HTTPS"


def test_bad_values_are_refused() -> None:
    for bad in (
        {"resource_name": "mlnx_sriov_cx6"},
        {"pool_vfs": "0-1", "mgmt_vf": 0},
        {"cluster_cidr": "10.96.0.0/16"},
        {"api_server": "http://x:6443"},
        {"unknown": 1},
        # strict: YAML's strings are not taken for booleans or numbers
        {"multus": "yes"},
        {"deploy_ovn_central": "false"},
        {"mgmt_vf": "3"},
        {"node_prefix": "24"},
        {"nad_type": "bridge"},
    ):
        with pytest.raises(ValueError):
            DeployValues.model_validate(bad)


@pytest.mark.parametrize(
    ("name", "part"),
    [("dpunet.yaml", "install"), ("dpu-static-pod.yaml", "dpu-static-pod"),
     ("example-pod.yaml", "example-pod")],
)  # fmt: skip
def test_committed_deploy_files_are_the_rendered_ones(name: str, part: str) -> None:
    result = CliRunner().invoke(
        k8s, ["render", "--values", str(DEPLOY / "values.yaml"), "--part", part]
    )
    assert result.exit_code == 0, result.output
    committed = (DEPLOY / name).read_text()
    header = committed.splitlines(keepends=True)[0]
    assert header.startswith("# Generated by `dpunet k8s render")
    assert committed[len(header) :] == result.output, f"re-render deploy/{name}"


def test_render_json_and_value_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(k8s, ["render", "-o", "json", "--part", "example-pod"])
    assert json.loads(result.output)["items"][0]["kind"] == "Pod"
    values = tmp_path / "values.yaml"
    values.write_text("pool_vfs: 0-2\n")
    result = CliRunner().invoke(k8s, ["render", "--values", str(values)])
    assert result.exit_code != 0
    assert "mgmt_vf 0 is also in pool_vfs" in result.output


def test_install_cni(tmp_path: Path) -> None:
    bin_dir, lib_dir, conf_dir = tmp_path / "bin", tmp_path / "lib", tmp_path / "net.d"
    args = ["install-cni", "--bin-dir", str(bin_dir), "--lib-dir", str(lib_dir)]
    result = CliRunner().invoke(k8s, [*args, "--conf-dir", str(conf_dir)])
    assert result.exit_code == 0, result.output
    for name in ("dpunet-cni", "ovn-k8s-cni-overlay"):
        assert (bin_dir / name).stat().st_mode & 0o111
        assert str(lib_dir) in (bin_dir / name).read_text()
        assert f"installed {bin_dir / name}" in result.output
    conf = json.loads((conf_dir / "10-dpunet.conflist").read_text())
    assert conf == cni_config()
    assert conf["plugins"] == [{"type": "dpunet-cni"}]
