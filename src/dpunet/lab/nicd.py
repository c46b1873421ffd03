"""The lab's emulated-NIC daemon: ``python -m dpunet.lab.nicd CONFIG.json``.

One process per lab. For every host/DPU pair of the config it creates the PF
pair and the initial VF pairs, keeps them alive like the kernel keeps
physical functions alive, and serves the emulated sysfs roots of all nodes
through one FUSE mount (``<mountpoint>/<node>/``). It writes ``ready_file``
once the mount is up and the initial VFs exist. SIGTERM (or SIGINT/SIGHUP)
unmounts, deletes every pair and removes the pid and ready files.

Threads: the main thread waits for signals; one engine thread owns every
netlink change (jobs, event-driven repairs, a periodic sweep); one libfuse
thread answers filesystem requests, one at a time, from the netlink views
(single-threaded FUSE halves the latency of a read here; a ``sriov_numvfs``
write holds other requests until it is done).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pyroute2.netlink.exceptions import NetlinkError

from dpunet.lab.nic import EmulatedNic, NetnsSide, log_event, parse_kstrtou16
from dpunet.lab.nic_config import NicDaemonConfig

T = TypeVar("T")
log = logging.getLogger("dpunet.lab.nicd")

_MNT_DETACH = 2
_JOB_TIMEOUT = 120.0
_MOUNT_TIMEOUT = 10.0
_FUSE_EXIT_TIMEOUT = 5.0
_SIGNAL_POLL = 0.5
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_MS_BIND = 0x1000
_MS_SHARED = 0x100000
_MAX_STALE_MOUNTS = 8
_FUSE_SUBTYPE = "dpunet-sysfs"
_FUSE_TYPE = f"fuse.{_FUSE_SUBTYPE}"


class Engine:
    """Owns the NICs: the only thread that changes links, plus the shared lock."""

    def __init__(self, cfg: NicDaemonConfig) -> None:
        self.cfg = cfg
        self.lock = threading.RLock()
        self.nics: list[EmulatedNic] = []
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._due = False
        self._stopping = False
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nic-engine", daemon=True)

    def start(self) -> None:
        """Open the netns, create the PF and initial VF pairs; raise on failure."""
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self) -> None:
        """Delete every pair and stop the engine thread."""
        if self._thread.is_alive():
            self._stopping = True
            self._wake()
            self._thread.join()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the engine thread and return its result (or raise its error)."""
        if not self._thread.is_alive() or self._stopping:
            raise OSError(errno.ENODEV, "NIC daemon is stopping")
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        self._wake()
        try:
            return future.result(timeout=_JOB_TIMEOUT)
        except TimeoutError as exc:
            raise OSError(errno.EIO, "NIC engine did not answer") from exc

    @contextmanager
    def synced(self) -> Iterator[None]:
        """Hold the lock with every queued netlink event applied."""
        with self.lock:
            if any([nic.drain() for nic in self.nics]):
                self._due = True
                self._wake()
            yield

    def write_numvfs(self, nic: EmulatedNic, data: bytes) -> None:
        """Kernel semantics of a ``sriov_numvfs`` store: EINVAL, ERANGE, EBUSY, synchronous."""
        try:
            count = parse_kstrtou16(data)
        except ValueError as exc:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL)) from exc
        if count > nic.cfg.sriov_totalvfs:
            raise OSError(errno.ERANGE, os.strerror(errno.ERANGE))
        self.call(lambda: nic.set_numvfs(count))

    def reset_dpu(self, nic: EmulatedNic, data: bytes) -> None:
        """A store to the DPU function's ``reset``: only ``1`` resets (else EINVAL)."""
        try:
            value = parse_kstrtou16(data)
        except ValueError:
            value = 0
        if value != 1:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self.call(nic.reset_dpu)

    def _wake(self) -> None:
        with suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def _run(self) -> None:
        try:
            self._open()
            for nic in self.nics:
                with self.lock:
                    nic.resync()
                    if nic.adopt():
                        log_event(log, "adopted", host=nic.cfg.host_node, numvfs=nic.numvfs)
                    else:
                        nic.numvfs = nic.cfg.numvfs
                nic.reconcile()
        except BaseException as exc:
            self._error = exc
            self._teardown()
            self._started.set()
            return
        self._started.set()
        try:
            self._loop()
        except BaseException as exc:
            log_event(log, "engine_failed", error=repr(exc))
            raise
        finally:
            self._teardown()

    @property
    def alive(self) -> bool:
        """The engine thread runs (it ends on stop() or on an unexpected error)."""
        return self._thread.is_alive()

    def _open(self) -> None:
        for pair in self.cfg.pairs:
            host = NetnsSide(pair.host_netns, listen_all_nsid=True)
            try:
                dpu = NetnsSide(pair.dpu_netns, listen_all_nsid=False)
            except BaseException:
                host.close()
                raise
            self.nics.append(EmulatedNic(self.cfg.lab, pair, host, dpu, log, self.lock))

    def _loop(self) -> None:
        sweep_at = time.monotonic() + self.cfg.sweep_interval
        fds = [self._wake_r, *(s.events.fileno() for nic in self.nics for s in (nic.host, nic.dpu))]
        while not self._stopping:
            select.select(fds, [], [], max(0.0, sweep_at - time.monotonic()))
            with suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
            with self.synced():
                pass
            while not self._jobs.empty():
                fn, future = self._jobs.get()
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
            if self._due or time.monotonic() >= sweep_at:
                self._due = False
                sweep_at = time.monotonic() + self.cfg.sweep_interval
                for nic in self.nics:
                    try:
                        nic.reconcile()
                    except (OSError, NetlinkError) as exc:
                        log_event(log, "reconcile_failed", host=nic.cfg.host_node, error=exc)

    def _teardown(self) -> None:
        for nic in self.nics:
            try:
                nic.teardown()
            except (OSError, NetlinkError) as exc:
                log_event(log, "teardown_failed", host=nic.cfg.host_node, error=exc)
            nic.host.close()
            nic.dpu.close()
        self.nics.clear()
        log_event(log, "links_removed")


def _libc_call(name: str, *args: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def _unmount(mountpoint: Path) -> None:
    try:
        _libc_call("umount2", str(mountpoint).encode(), 0)
    except OSError:
        # Busy (a process sits inside): detach it.
        with suppress(OSError):
            _libc_call("umount2", str(mountpoint).encode(), _MNT_DETACH)


def _mounts_at(path: Path) -> list[str]:
    """Filesystem types mounted at ``path``, bottom first (from /proc/self/mountinfo)."""
    types = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        if fields[4].encode().decode("unicode_escape") == str(path):
            types.append(fields[fields.index("-") + 1])
    return types


def _prepare_mountpoint(mountpoint: Path) -> None:
    """Put a shared bind mount at ``mountpoint`` for the FUSE mount to sit on.

    Mount namespaces copied from then on (every `ip netns exec`, which makes
    its copy a slave) follow our FUSE mounts and unmounts, also those of a
    daemon restarted after a crash; a stale FUSE mount of such a crash is
    removed here.
    """
    for _ in range(_MAX_STALE_MOUNTS):
        if _mounts_at(mountpoint)[-1:] != [_FUSE_TYPE]:
            break
        _unmount(mountpoint)
        log_event(log, "stale_mount_removed", mountpoint=mountpoint)
    if not _mounts_at(mountpoint):
        mountpoint.mkdir(parents=True, exist_ok=True)
        _libc_call(
            "mount", str(mountpoint).encode(), str(mountpoint).encode(), None, _MS_BIND, None
        )
    _libc_call("mount", None, str(mountpoint).encode(), None, _MS_SHARED, None)


def _release_mountpoint(mountpoint: Path) -> None:
    """Remove every mount at ``mountpoint`` (our bind, a FUSE mount libfuse left)."""
    for _ in range(_MAX_STALE_MOUNTS):
        if not _mounts_at(mountpoint):
            return
        _unmount(mountpoint)


def _take_signal(timeout: float) -> bool:
    """Wait up to ``timeout`` for a stop signal (they are blocked in every thread)."""
    info = signal.sigtimedwait(_STOP_SIGNALS, timeout)
    if info is None:
        return False
    log_event(log, "signal", signal=signal.Signals(info.si_signo).name)
    return True


def _serve(cfg: NicDaemonConfig, engine: Engine) -> int:
    """Mount, announce readiness, wait for a stop signal (or FUSE's end), unmount."""
    # Imported here: they load libfuse3, which users of the config model need not have.
    import mfusepy

    from dpunet.lab.sysfs_fs import SysfsFuse, SysfsTree

    mounted = threading.Event()
    ended = threading.Event()
    fuse_error: list[BaseException] = []
    ops = SysfsFuse(SysfsTree(engine.nics, engine), engine, mounted.set)

    def run_fuse() -> None:
        try:
            mfusepy.FUSE(
                ops,
                str(cfg.mountpoint),
                foreground=True,
                nothreads=True,
                allow_other=True,
                fsname=f"dpunet-lab-{cfg.lab}",
                subtype=_FUSE_SUBTYPE,
            )
        except BaseException as exc:
            fuse_error.append(exc)
        finally:
            ended.set()
            mounted.set()

    fuse_thread = threading.Thread(target=run_fuse, name="fuse", daemon=True)
    fuse_thread.start()
    if not mounted.wait(_MOUNT_TIMEOUT) or ended.is_set():
        log_event(log, "mount_failed", mountpoint=cfg.mountpoint, error=fuse_error or "timeout")
        _unmount(cfg.mountpoint)
        fuse_thread.join(_FUSE_EXIT_TIMEOUT)
        return 1
    cfg.ready_file.write_text(f"{os.getpid()}\n")
    log_event(log, "ready", mountpoint=cfg.mountpoint, pid=os.getpid())
    while not ended.is_set() and engine.alive and not _take_signal(_SIGNAL_POLL):
        pass
    cfg.ready_file.unlink(missing_ok=True)
    # An unmount alone does not end the loop while other mount namespaces (any
    # `ip netns exec`) hold copies of the mount: stop libfuse itself, which then
    # unmounts and closes /dev/fuse (that also kills the copies).
    ops.exit()
    with suppress(OSError):
        os.stat(cfg.mountpoint)  # one request, so that a worker sees the exit
    fuse_thread.join(_FUSE_EXIT_TIMEOUT)
    if fuse_thread.is_alive():
        _unmount(cfg.mountpoint)
        fuse_thread.join(_FUSE_EXIT_TIMEOUT)
    log_event(log, "unmounted", mountpoint=cfg.mountpoint, fuse_ended=not fuse_thread.is_alive())
    return 1 if fuse_error or not engine.alive else 0


def _already_running(cfg: NicDaemonConfig) -> str | None:
    try:
        pid = int(cfg.pidfile.read_text().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid and pid != os.getpid():
        with suppress(OSError):
            if b"dpunet.lab.nicd" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return f"pid {pid} of {cfg.pidfile} is alive"
    if _mounts_at(cfg.mountpoint)[-1:] == [_FUSE_TYPE]:
        try:
            os.stat(cfg.mountpoint)
        except OSError:
            return None  # stale: its daemon is gone
        return f"another NIC daemon serves {cfg.mountpoint}"
    return None


def run(cfg: NicDaemonConfig) -> int:
    """Run the daemon until SIGTERM/SIGINT/SIGHUP; return the exit status."""
    # Blocked here, before any thread exists, so that no thread gets them
    # asynchronously; the main thread takes them with sigtimedwait().
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    if (reason := _already_running(cfg)) is not None:
        log_event(log, "refused", reason=reason)
        return 1
    cfg.ready_file.unlink(missing_ok=True)  # left by a daemon that was killed
    cfg.pidfile.write_text(f"{os.getpid()}\n")
    created_mountpoint = not _mounts_at(cfg.mountpoint) and not cfg.mountpoint.exists()
    status = 1
    try:
        engine = Engine(cfg)
        try:
            _prepare_mountpoint(cfg.mountpoint)
            engine.start()
        except Exception as exc:
            log_event(log, "start_failed", error=repr(exc))
            return 1
        try:
            status = 0 if _take_signal(0) else _serve(cfg, engine)
        finally:
            engine.stop()
    finally:
        cfg.ready_file.unlink(missing_ok=True)
        _release_mountpoint(cfg.mountpoint)
        if created_mountpoint:
            with suppress(OSError):
                cfg.mountpoint.rmdir()
        cfg.pidfile.unlink(missing_ok=True)
        log_event(log, "exit", status=status)
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m dpunet.lab.nicd CONFIG.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dpunet.lab.nicd CONFIG.json", file=sys.stderr)
        return 2
    try:
        cfg = NicDaemonConfig.model_validate_json(Path(args[0]).read_text())
    except (OSError, ValidationError) as exc:
        print(f"dpunet.lab.nicd: bad config {args[0]}: {exc}", file=sys.stderr)
        return 2
    cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(cfg.log_file)
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log_event(log, "start", lab=cfg.lab, pairs=len(cfg.pairs), pid=os.getpid())
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
