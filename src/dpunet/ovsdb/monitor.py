"""A python-ovs IDL kept connected by a thread of its own: the Southbound monitors of the
controller (`dpunet.controller.sb`) and of the DPU agent (`dpunet.dpu.sb`)."""

from __future__ import annotations

import abc
import logging
import os
import threading
from typing import Generic, TypeVar

from ovs import poller
from ovs.db import idl as ovs_idl

from dpunet.logs import event

RETRY_MAX_S = 10.0

IdlT = TypeVar("IdlT", bound=ovs_idl.Idl)


class IdlThread(abc.ABC, Generic[IdlT]):
    """Makes an IDL (retrying with back-off while no remote answers), runs it whenever
    its server sends something, and closes it at `stop`; python-ovs reconnects a made IDL
    by itself. Subclasses say how the IDL is made and what follows each run; `_lock` is
    held while the IDL runs, so readers of the replica take it too."""

    CONNECT_FAILED = "idl-connect-failed"  # the log events; subclasses name their own
    RUN_FAILED = "idl-run-failed"

    def __init__(self, thread_name: str, log: logging.Logger) -> None:
        self._thread_name = thread_name
        self._log = log
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._idl: IdlT | None = None

    def start(self) -> None:
        """Start the thread (it connects, and reconnects, by itself)."""
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the connection."""
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout)
        os.close(self._wake_r)
        os.close(self._wake_w)

    @abc.abstractmethod
    def _make_idl(self) -> IdlT:
        """A new IDL (raises when no remote gives the schema)."""

    @abc.abstractmethod
    def _after_run(self, idl: IdlT) -> bool:
        """Called under `_lock` after each run; True to call `_changed`."""

    def _changed(self) -> None:
        """The replica or the connection's state changed (called without `_lock`)."""

    def _run_failed(self) -> None:
        """A run raised; the IDL is reconnecting."""

    def _stopped(self) -> None:
        """The thread is about to end."""

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            idl = self._idl
            if idl is None:
                try:
                    idl = self._make_idl()
                except Exception as exc:  # unreachable, no schema: log, back off, retry
                    event(
                        self._log, self.CONNECT_FAILED, logging.WARNING, error=str(exc), retry=delay
                    )
                    self._stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                with self._lock:
                    self._idl = idl
            try:
                with self._lock:
                    idl.run()
                    notify = self._after_run(idl)
            except Exception as exc:  # a python-ovs bug must not end the monitor
                event(self._log, self.RUN_FAILED, logging.ERROR, error=repr(exc))
                self._run_failed()
                idl.force_reconnect()
                notify = True
            if notify:
                self._changed()
            wait = poller.Poller()
            idl.wait(wait)
            wait.fd_wait(self._wake_r, poller.POLLIN)
            wait.block()
        self._stopped()
        if self._idl is not None:
            self._idl.close()
