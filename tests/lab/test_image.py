"""The dpunet image (issue 14): `make image`'s script builds it here from Debian's packages
and wheels made here, with no registry, and the image runs dpunet and OVN's daemons;
`dpunet lab up --from-image` runs every dpunet daemon of the lab as its manifest's
container of that image, and the lab works as it does with the daemons run directly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from commands import dpunet

from dpunet import __version__
from dpunet.deploy import manifests
from dpunet.lab import image as lab_image
from dpunet.lab import pods, services
from dpunet.lab.lab import down
from dpunet.lab.selftest import ping
from dpunet.lab.topology import LabPlan, LabSpec
from dpunet.setup import pki

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
RUN = ["--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def build_image() -> str:
    """The image as `make image` builds it (quick when it is up to date); its name."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-image.sh")],
        env={**os.environ, "VENV": sys.prefix},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-image.sh failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def image() -> str:
    return build_image()


def podman(*args: str) -> str:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_image_is_named_after_the_version(image: str) -> None:
    assert image == f"localhost/dpunet:{__version__}"
    labels = podman("image", "inspect", "--format", "{{json .Labels}}", image)
    assert f'"org.opencontainers.image.version":"{__version__}"' in labels
    assert '"io.dpunet.source":' in labels


def test_image_runs_dpunet(image: str) -> None:
    assert podman("run", *RUN, image, "--version").strip() == f"dpunet, version {__version__}"
    # the daemons' entrypoints (args only, as the manifests give them) parse
    assert "--config" in podman("run", *RUN, image, "controller", "run", "--help")


def test_image_has_ovn_and_the_cni_shim(image: str) -> None:
    script = (
        "ovn-controller --version && ovn-northd --version && ovsdb-server --version "
        "&& test -x /usr/share/ovn/scripts/ovn-ctl && command -v dpunet-cni "
        "&& python3 -c 'import ovs, dpunet; print(dpunet.__file__)'"
    )
    out = podman("run", *RUN, "--entrypoint", "sh", image, "-c", script)
    assert "ovn-controller 23.03" in out
    assert "/opt/dpunet/venv/bin/dpunet-cni" in out
    assert "/opt/dpunet/venv/lib/python3.11/site-packages/dpunet/__init__.py" in out


# the daemons' own settings loaders, run in the image
LOADERS = {
    "dpunet-controller": "from dpunet.controller.config import ControllerConfig as M\n"
    "from dpunet.settings import load_settings\nc = load_settings(M, P)",
    "dpunet-host": "from dpunet.host.config import HostAgentConfig as M\n"
    "from dpunet.settings import load_settings\nc = load_settings(M, P)",
    "dpunet-node": "from dpunet.node.config import NodeAgentConfig as M\n"
    "from dpunet.settings import load_settings\nc = load_settings(M, P)",
    "dpunet-dpu": "from dpunet.dpu.config import load_config\nc = load_config(P)",
}


@pytest.mark.parametrize("service", sorted(LOADERS))
def test_the_rendered_config_loads_in_the_image(image: str, service: str, tmp_path: Path) -> None:
    """Each daemon's file of the rendered `dpunet-config` ConfigMap, mounted where its
    manifest mounts it and with its env, is valid settings for the image's daemon."""
    rendered = next(
        m
        for m in manifests.render(lab_image.lab_values(image))
        if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "dpunet-config"
    )
    key = lab_image.config_key(image, service)
    _, container = lab_image.workload(image, service)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    (tmp_path / key).write_text(rendered["data"][key])
    env = [
        arg
        for item in container.get("env", [])
        for arg in ("--env", f"{item['name']}={item.get('value', 'node1')}")
    ]
    script = (
        f"from pathlib import Path\nP = Path({mount['mountPath']!r})\n{LOADERS[service]}\n"
        "print(c.model_dump_json())"
    )
    out = podman(
        "run", *RUN, *env, "--volume", f"{tmp_path / key}:{mount['mountPath']}:ro",
        "--entrypoint", "python3", image, "-c", script,
    )  # fmt: skip
    loaded = json.loads(out)
    for name, value in yaml.safe_load(rendered["data"][key]).items():
        assert json.loads(json.dumps(loaded[name], default=str)) == value, (service, name)


# ------------------------------------------------------------------ the lab from the image
LAB = "img"


def lab_containers() -> dict[str, dict[str, str]]:
    """The lab's containers by name: image and host pid."""
    out = podman(
        "ps", "--all", "--filter", f"label={lab_image.LAB_LABEL}={LAB}", "--format", "json"
    )
    return {
        c["Names"][0]: {"image": c["Image"], "pid": str(c["Pid"]), "state": c["State"]}
        for c in json.loads(out or "[]")
    }


@pytest.fixture(scope="module")
def image_lab(image: str) -> Iterator[LabPlan]:
    down(LAB)
    dpunet("lab", "up", "--name", LAB, "--from-image", image)
    yield LabPlan(LabSpec(name=LAB, image=image))
    down(LAB)


def cap_eff(pid: str) -> int:
    """The effective capabilities of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("CapEff:")[1].split()[0], 16)


def _services(plan: LabPlan) -> list[tuple[str, str, int]]:
    """(node, service, pid from its pidfile) of every dpunet daemon of the lab."""
    out = []
    for node in plan.nodes:
        for service in services.node_services(plan, node):
            pid = int(service.pidfile.read_text())
            out.append((node.name, service.name, pid))
    return out


def test_every_daemon_runs_in_a_container_of_the_image(image_lab: LabPlan, image: str) -> None:
    found = _services(image_lab)
    assert sorted(s for _, s, _ in found) == [
        "dpunet-controller", "dpunet-dpu", "dpunet-host", "dpunet-node",
    ]  # fmt: skip
    containers = lab_containers()
    for node_name, service, pid in found:
        node = image_lab.node(node_name)
        name = lab_image.container_name(image_lab, node, service)
        assert containers[name]["image"] == image
        assert containers[name]["state"] == "running"
        assert containers[name]["pid"] == str(pid)
        # the process sees the image's files, in the node's network namespace
        assert Path(f"/proc/{pid}/root/opt/dpunet/venv/bin/dpunet").exists()
        netns = os.stat(f"/run/netns/{node.netns}")
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns.st_ino
        # the manifest's entrypoint and args
        pod, container = lab_image.workload(image, service)
        cmdline = Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
        assert cmdline[1:] == ["/opt/dpunet/venv/bin/dpunet", *container["args"]], cmdline
        # privileged as the manifest says (every capability), host PID namespace likewise
        privileged = container.get("securityContext", {}).get("privileged", False)
        assert (cap_eff(str(pid)) == cap_eff("self")) == privileged, service
        same_pid_ns = os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat("/proc/self/ns/pid").st_ino
        assert same_pid_ns == bool(pod.get("hostPID")), service
        # every mount of the manifest, at its mountPath
        mountinfo = Path(f"/proc/{pid}/mountinfo").read_text()
        targets = {line.split()[4] for line in mountinfo.splitlines()}
        for mount in container["volumeMounts"]:
            path = mount["mountPath"]  # /var/run is a link to /run in the image
            assert path.replace("/var/run/", "/run/", 1) in targets, (service, mount)


def test_daemons_read_their_config_where_the_manifest_mounts_it(
    image_lab: LabPlan, image: str
) -> None:
    for node_name, service, pid in _services(image_lab):
        _, container = lab_image.workload(image, service)
        config = container["args"][container["args"].index("--config") + 1]
        written = image_lab.node_dir(image_lab.node(node_name)) / "volumes" / "config"
        key = lab_image.config_key(image, service)
        assert Path(config).name == key
        assert Path(f"/proc/{pid}/root{config}").read_text() == (written / key).read_text()
        token = Path(f"/proc/{pid}/root/run/secrets/dpunet/token")  # /var/run: a link
        if service in ("dpunet-host", "dpunet-node", "dpunet-dpu"):
            expected = services.token_path(image_lab, node_name).read_text()
            assert token.read_text() == expected
            assert token.stat().st_mode & 0o077 == 0


def test_lab_check_and_pods_ping(image_lab: LabPlan) -> None:
    vf_pod = pods.add_pod(image_lab, "imgvf", "host1", "podman")
    veth_pod = pods.add_pod(image_lab, "imgveth", "cp", "podman")
    try:
        assert vf_pod.pci is not None, "a VF pod on the dpu-host"
        assert vf_pod.ip and veth_pod.ip
        ok, detail = ping(vf_pod.netns, veth_pod.ip)
        assert ok, detail
        ok, detail = ping(veth_pod.netns, vf_pod.ip)
        assert ok, detail
        proc = dpunet("lab", "check", "--name", LAB)
        assert "imgvf" in proc.stdout and "failed" not in proc.stdout.lower()
    finally:
        pods.del_pod(image_lab, "imgvf")
        pods.del_pod(image_lab, "imgveth")


def test_a_killed_daemon_restarts_from_the_image(image_lab: LabPlan) -> None:
    host = image_lab.node("host1")
    service = next(s for s in services.node_services(image_lab, host) if s.name == "dpunet-host")
    old = int(service.pidfile.read_text())
    os.kill(old, 9)
    name = lab_image.container_name(image_lab, host, "dpunet-host")
    for _ in range(100):
        if name not in lab_containers():
            break
        subprocess.run(["sleep", "0.1"], check=True)
    dpunet("lab", "restart", "--name", LAB, "host1", "dpunet-host")
    new = int(service.pidfile.read_text())
    assert new != old
    assert lab_containers()[name]["pid"] == str(new)


def test_a_rebooted_dpu_starts_its_agent_from_the_image_again(
    image_lab: LabPlan, image: str
) -> None:
    dpu = image_lab.node("dpu1")
    name = lab_image.container_name(image_lab, dpu, "dpunet-dpu")
    old = lab_containers()[name]["pid"]
    dpunet("lab", "reboot", "--name", LAB, "dpu1")
    container = lab_containers()[name]
    assert container["pid"] != old and container["image"] == image
    assert Path(f"/proc/{container['pid']}/root/opt/dpunet/venv").is_dir()


def test_down_removes_the_containers(image_lab: LabPlan) -> None:
    assert lab_containers()
    removed = down(LAB)
    assert any(r.startswith("netns") for r in removed)
    assert lab_containers() == {}


def test_ovn_central_runs_from_the_image_as_rendered(image: str, tmp_path: Path) -> None:
    """The ovn-central Deployment's containers (NB, SB, northd) with their rendered
    commands and volumes, in a network namespace of their own: northd turns an NB switch
    into an SB datapath, through the unix sockets of the pod's shared ovn-run volume."""
    deployment = next(
        m
        for m in manifests.render(lab_image.lab_values(image))
        if m["kind"] == "Deployment" and m["metadata"]["name"] == "ovn-central"
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostNetwork"]
    sources = {}
    for volume in pod["volumes"]:  # one directory per volume, shared by the containers
        sources[volume["name"]] = tmp_path / volume["name"]
        sources[volume["name"]].mkdir()
    # the dpunet-tls-ovn-central Secret: its key, certificate and CA (NB/SB are pssl: only)
    cert = pki.issue(Path(pki.init_ca(tmp_path / "pki").parent), "ovn-central")
    for key, name in manifests.TLS_FILES.items():
        shutil.copyfile(getattr(cert, key), sources["tls"] / name)
    netns = f"dpunet-imgtest-{os.getpid()}"
    names = [f"{netns}-{c['name']}" for c in pod["containers"]]
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        for name, container in zip(names, pod["containers"], strict=True):
            volumes = [
                arg
                for m in container["volumeMounts"]
                for arg in ("--volume", f"{sources[m['name']]}:{m['mountPath']}")
            ]
            command = container["command"]
            podman(
                "run", "--detach", "--rm", "--name", name, "--network", f"ns:/run/netns/{netns}",
                *lab_image.ULIMITS, *volumes, "--entrypoint", command[0], image, *command[1:],
            )  # fmt: skip
        run_dir = sources["ovn-run"]
        nb, sb = f"unix:{run_dir}/ovnnb_db.sock", f"unix:{run_dir}/ovnsb_db.sock"

        def datapaths() -> str:
            proc = subprocess.run(
                ["ovn-sbctl", f"--db={sb}", "--timeout=5", "list", "Datapath_Binding"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            return proc.stdout

        for _ in range(100):
            if (run_dir / "ovnnb_db.sock").exists() and (run_dir / "ovnsb_db.sock").exists():
                break
            subprocess.run(["sleep", "0.2"], check=True)
        subprocess.run(
            ["ovn-nbctl", f"--db={nb}", "--timeout=10", "ls-add", "imgtest"],
            check=True, capture_output=True, timeout=20,
        )  # fmt: skip
        for _ in range(100):
            if "name=imgtest" in datapaths():
                break
            subprocess.run(["sleep", "0.2"], check=True)
        assert "name=imgtest" in datapaths(), podman("logs", names[-1])
        assert (sources["ovn-db"] / "ovnnb_db.db").exists()  # on the hostPath volume
    finally:
        for name in names:
            subprocess.run(
                ["podman", "rm", "--force", "--ignore", "--time", "0", name],
                capture_output=True, check=False,
            )  # fmt: skip
        subprocess.run(["ip", "netns", "del", netns], check=False)
