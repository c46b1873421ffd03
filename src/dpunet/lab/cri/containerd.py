"""A private containerd with its CRI plugin: root, state, sockets and runc state in one
directory, cgroupfs, runc, CNI from a given bin/conf dir, and a sandbox image built here
from busybox-static (no registry)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dpunet.lab.cri.client import CriClient, CriError
from dpunet.lab.runner import LabError, pid_alive, read_pid, run, terminate, wait_for

BUSYBOX = Path("/bin/busybox")
RUNC = Path("/usr/sbin/runc")
LOOPBACK_PLUGIN = Path("/usr/lib/cni/loopback")  # containernetworking-plugins
SANDBOX_IMAGE = "dpunet.lab/pause:1"
K8S_NAMESPACE = "k8s.io"
PAUSE_COMMAND = ["/bin/busybox", "sleep", "2147483647"]
START_TIMEOUT = 30.0
# plugins a lab node has no use for (each would probe the machine at start)
UNUSED_PLUGINS = [
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
]
SHIM_SOCKET_DIR = Path("/run/containerd/s")  # fixed in containerd; each shim removes its own
INSTANCE = "instance.json"  # how to start it again, for `stop` after a crash


@dataclass(frozen=True)
class Containerd:
    """One containerd instance: everything it writes lives under `base`, except the
    network namespaces its CRI plugin mounts at /run/netns/cni-*, the runc shims'
    sockets in /run/containerd/s and the sandboxes' cgroups below `cgroup_parent`
    (all removed with the sandboxes, or by `stop`)."""

    base: Path
    cni_bin_dir: Path
    cni_conf_dir: Path
    cgroup_parent: str  # the sandboxes' cgroups go below it (cgroupfs: /<name>/<id>)
    netns: str | None = None  # a /run/netns name; None: this process's namespace

    @classmethod
    def load(cls, base: Path) -> Containerd | None:
        """The instance that was started in `base`, or None."""
        try:
            data = json.loads((base / INSTANCE).read_text())
            return cls(
                base=Path(data["base"]),
                cni_bin_dir=Path(data["cni_bin_dir"]),
                cni_conf_dir=Path(data["cni_conf_dir"]),
                cgroup_parent=data["cgroup_parent"],
                netns=data["netns"],
            )
        except (OSError, ValueError, KeyError):
            return None

    @property
    def socket(self) -> Path:
        """The gRPC socket (the CRI endpoint)."""
        return self.base / "containerd.sock"

    @property
    def config(self) -> Path:
        """The generated config.toml."""
        return self.base / "config.toml"

    @property
    def pidfile(self) -> Path:
        """Holds containerd's pid while it runs."""
        return self.base / "containerd.pid"

    @property
    def logfile(self) -> Path:
        """containerd's output."""
        return self.base / "containerd.log"

    @property
    def snapshotter(self) -> str:
        """overlayfs where the kernel has it, else native (plain copies)."""
        filesystems = Path("/proc/filesystems").read_text().split()
        return "overlayfs" if "overlay" in filesystems else "native"

    def alive(self) -> bool:
        """Whether containerd runs."""
        return pid_alive(read_pid(self.pidfile))

    def client(self, timeout: float = 120.0) -> CriClient:
        """A CRI client of this containerd."""
        return CriClient(self.socket, timeout)

    # ------------------------------------------------------------------ start
    def ensure_running(self) -> None:
        """Start containerd and import the sandbox image unless it runs already;
        LabError with the end of its log when it does not come up."""
        self.base.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.alive():
                return
            self._start()
            try:
                self._import_sandbox_image()
            except LabError:
                self.stop()
                raise

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.base / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _start(self) -> None:
        self._provide_loopback()
        self.config.write_text(self._config_toml())
        fields = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        (self.base / INSTANCE).write_text(json.dumps(fields))
        argv = ["containerd", "--config", str(self.config)]
        if self.netns:
            argv = ["nsenter", f"--net=/run/netns/{self.netns}", *argv]
        with open(self.logfile, "ab") as log:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            except FileNotFoundError as exc:
                raise LabError("containerd is not installed (run scripts/install-deps.sh)") from exc
        self.pidfile.write_text(f"{proc.pid}\n")  # nsenter execs containerd: same pid

        def answers() -> bool:
            if proc.poll() is not None:
                raise LabError(f"containerd exited: {self._log_tail()}")
            if not self.socket.exists():
                return False
            with self.client(timeout=2) as cri:
                try:
                    cri.version()
                except CriError:
                    return False
            return True

        try:
            wait_for(f"containerd on {self.socket}", answers, timeout=START_TIMEOUT)
        except LabError:
            terminate([proc.pid])
            raise

    def _provide_loopback(self) -> None:
        """The CRI plugin brings up each sandbox's `lo` with the reference `loopback`
        plugin, which it looks for next to the network's plugins (as in /opt/cni/bin)."""
        link = self.cni_bin_dir / LOOPBACK_PLUGIN.name
        if link.exists():
            return
        if not LOOPBACK_PLUGIN.exists():
            raise LabError(f"{LOOPBACK_PLUGIN} is missing (install containernetworking-plugins)")
        with contextlib.suppress(FileExistsError):
            link.symlink_to(LOOPBACK_PLUGIN)

    def _log_tail(self) -> str:
        text = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
        return text[-1500:].strip()

    def _config_toml(self) -> str:
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        return "\n".join(
            [
                "version = 2",
                f'root = "{self.base / "root"}"',
                f'state = "{self.base / "state"}"',
                f"disabled_plugins = {json.dumps(UNUSED_PLUGINS)}",
                "[grpc]",
                f'  address = "{self.socket}"',
                "[ttrpc]",
                f'  address = "{self.base / "containerd.ttrpc.sock"}"',
                '[plugins."io.containerd.internal.v1.opt"]',
                f'  path = "{self.base / "opt"}"',
                f"{cri}]",
                f'  sandbox_image = "{SANDBOX_IMAGE}"',
                '  stream_server_address = "127.0.0.1"',
                '  stream_server_port = "0"',
                "  enable_selinux = false",
                "  restrict_oom_score_adj = true",
                f"{cri}.containerd]",
                f'  snapshotter = "{self.snapshotter}"',
                '  default_runtime_name = "runc"',
                f"{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"{cri}.containerd.runtimes.runc.options]",
                f'  BinaryName = "{RUNC}"',
                f'  Root = "{self.base / "runc"}"',
                "  SystemdCgroup = false",
                f"{cri}.cni]",
                f'  bin_dir = "{self.cni_bin_dir}"',
                f'  conf_dir = "{self.cni_conf_dir}"',
                "  max_conf_num = 1",
                "",
            ]
        )

    def _import_sandbox_image(self) -> None:
        archive = self.base / "pause.tar"
        write_sandbox_image(archive)
        argv = [
            "ctr", "-n", K8S_NAMESPACE, "--address", str(self.socket), "images", "import",
            "--snapshotter", self.snapshotter, str(archive),
        ]  # fmt: skip
        try:
            run(argv, timeout=60)
        finally:
            archive.unlink()

    # ------------------------------------------------------------------- stop
    def stop(self) -> bool:
        """Stop and remove every sandbox (the runtime runs CNI DEL for each), stop
        containerd and its shims, remove `base` and the sandboxes' cgroups. A crashed
        containerd is started again first, so that it releases what its sandboxes hold;
        what it cannot release (a DEL that keeps failing) is torn down by force: the
        sandbox's processes killed, its network namespace unmounted and deleted.
        Returns whether there was an instance to stop."""
        if not (self.base / INSTANCE).exists():
            return False
        if not self.alive():
            with contextlib.suppress(LabError):
                self._start()
        leftovers: list[dict[str, Any]] = []  # verbose info of sandboxes it could not stop
        if self.alive():
            with self.client(timeout=60) as cri:
                sandboxes = []
                with contextlib.suppress(CriError):
                    sandboxes = cri.list_pod_sandbox()
                for sandbox in sandboxes:
                    info = sandbox_info(cri, sandbox.id)
                    try:
                        cri.stop_pod_sandbox(sandbox.id)
                        cri.remove_pod_sandbox(sandbox.id)
                    except CriError:
                        leftovers.append(info)
        terminate([p for p in [read_pid(self.pidfile), *self.shim_pids()] if p is not None])
        for info in leftovers:
            _tear_down(info)
        _unmount_below(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        _remove_cgroups(self.cgroup_parent)
        for d in (SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent):
            with contextlib.suppress(OSError):  # in use by another containerd
                d.rmdir()
        return True

    def shim_pids(self) -> list[int]:
        """The containerd-shim processes serving this containerd."""
        marker = f"\0{self.socket}\0".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = (proc / "cmdline").read_bytes()
                    if b"containerd-shim" in cmdline.split(b"\0")[0] and marker in cmdline:
                        pids.append(int(proc.name))
        return [p for p in pids if pid_alive(p)]


def sandbox_info(cri: CriClient, sandbox_id: str) -> dict[str, Any]:
    """containerd's details of a sandbox from the verbose status ({} if it has none): the
    pause process's `pid`, the OCI `runtimeSpec`, ..."""
    try:
        info: dict[str, Any] = json.loads(
            cri.pod_sandbox_status(sandbox_id, verbose=True).info["info"]
        )
    except (CriError, KeyError, ValueError):
        return {}
    return info


def sandbox_netns(cri: CriClient, sandbox_id: str) -> str | None:
    """The path of a sandbox's network namespace (from its runtime spec), or None."""
    return _netns_path(sandbox_info(cri, sandbox_id))


def _netns_path(info: dict[str, Any]) -> str | None:
    namespaces = info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", [])
    paths = [n.get("path") for n in namespaces if n.get("type") == "network"]
    return paths[0] if paths and paths[0] else None


def _tear_down(info: dict[str, Any]) -> None:
    """What containerd could not release of a sandbox: its pause process, its network
    namespace mount."""
    netns = _netns_path(info)
    pids = pids_in_netns(netns) if netns else []
    pause = info.get("pid")
    if isinstance(pause, int) and pause > 0 and _is_pause(pause):
        pids.append(pause)
    terminate(sorted(set(pids)))
    if netns:
        subprocess.run(["umount", netns], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            os.unlink(netns)


def _is_pause(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.split(b"\0")[:-1] == [arg.encode() for arg in PAUSE_COMMAND]


def pids_in_netns(netns_path: str) -> list[int]:
    """Processes whose network namespace is the one mounted at `netns_path`."""
    try:
        target = os.stat(netns_path)
    except OSError:
        return []
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                st = os.stat(proc / "ns" / "net")
                if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                    pids.append(int(proc.name))
    return pids


def _unmount_below(path: Path) -> None:
    prefix = str(path) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def _remove_cgroups(parent: str) -> None:
    """rmdir the (empty) cgroup tree `parent` in every cgroup hierarchy."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            _remove_empty_dirs(Path(fields[1]) / parent.lstrip("/"))


def _remove_empty_dirs(top: Path) -> None:
    """Remove `top` and the directories below it, deepest first, where they are empty
    (cgroup directories count as empty when no cgroup is below them)."""
    if not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


# ------------------------------------------------------------ sandbox image
def _go_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _layer() -> bytes:
    """An uncompressed layer: /bin/busybox and the directories runc mounts over."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write_sandbox_image(archive: Path) -> None:
    """An OCI image archive of SANDBOX_IMAGE: busybox-static sleeping as the pause process."""
    if not BUSYBOX.exists():
        raise LabError(f"{BUSYBOX} is missing (install busybox-static)")
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    layer = _layer()
    config = {
        "architecture": _go_arch(),
        "os": "linux",
        "config": {"Entrypoint": PAUSE_COMMAND, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar")],
    }
    entry = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    entry["annotations"] = {
        "io.containerd.image.name": SANDBOX_IMAGE,
        "org.opencontainers.image.ref.name": SANDBOX_IMAGE.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "manifests": [entry]}
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index).encode(),
        **{f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()},
    }
    with tarfile.open(archive, "w") as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
