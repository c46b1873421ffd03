"""Errors the controller answers with; each maps to one HTTP status."""

from __future__ import annotations


class ControllerError(Exception):
    """A request cannot be served; `status` is its HTTP status code."""

    status = 500


class BadRequest(ControllerError):
    """The request is well-formed but does not make sense (nothing was written)."""

    status = 400


class Forbidden(ControllerError):
    """The caller may not act on this object."""

    status = 403


class NotFound(ControllerError):
    """The object does not exist."""

    status = 404


class Conflict(ControllerError):
    """The request conflicts with existing state."""

    status = 409


class NotOwned(Conflict):
    """An NB object with a name dpunet needs exists and is not owned by dpunet."""


class Unavailable(ControllerError):
    """OVN Northbound cannot be reached (or the controller does not hold its lock)."""

    status = 503


class DeadlineExceeded(ControllerError):
    """The per-request deadline passed; the message names what was being waited for."""

    status = 504


class Exhausted(ControllerError):
    """No address or subnet is left."""

    status = 507
