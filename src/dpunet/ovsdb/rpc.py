"""OVSDB JSON-RPC with deadlines (python-ovs streams): one-shot requests, the schema from
the first of several remotes that answers, SSL, the schema helper an IDL is built from.

A server may accept a connection and never answer: every request here has a deadline,
where python-ovs' `transact_block` would wait forever.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ovs import jsonrpc, poller, stream, timeval, util
from ovs.db import idl as ovs_idl

NB_SCHEMA = "OVN_Northbound"
SB_SCHEMA = "OVN_Southbound"
SCHEMA_TIMEOUT_MS = 5000


def transact(rpc: jsonrpc.Connection, request: jsonrpc.Message, timeout_ms: int) -> Any:
    """`rpc.transact_block` with a deadline: (errno, reply), ETIMEDOUT when no reply came
    in time."""
    deadline_ms = timeval.msec() + timeout_ms
    err = rpc.send(request)
    while not err:
        err, reply = rpc.recv()
        if err == errno.EAGAIN:
            err = 0
            rpc.run()
            if timeval.msec() >= deadline_ms:
                return errno.ETIMEDOUT, None
            wait = poller.Poller()
            rpc.wait(wait)
            rpc.recv_wait(wait)
            wait.timer_wait_until(deadline_ms)
            wait.block()
        elif not err and reply.type in (reply.T_REPLY, reply.T_ERROR) and reply.id == request.id:
            return 0, reply
    return err, None


def _failure(err: int) -> OSError:
    """python-ovs' error number as an OSError (its EOF, -1, is no errno)."""
    if err == util.EOF:
        return OSError(errno.ECONNRESET, "connection closed by the server")
    return OSError(err, os.strerror(err))


def request(remote: str, method: str, params: list[Any], timeout_ms: int) -> jsonrpc.Message:
    """One request to `remote`, connected to and answered within `timeout_ms` each: the
    reply (its `error` may be set); OSError otherwise."""
    err, strm = stream.Stream.open_block(stream.Stream.open(remote), timeout_ms)
    if err:
        raise _failure(err)
    rpc = jsonrpc.Connection(strm)
    try:
        err, reply = transact(rpc, jsonrpc.Message.create_request(method, params), timeout_ms)
    finally:
        rpc.close()
    if err:
        raise _failure(err)
    return reply


def fetch_schema(remotes: Sequence[str], schema: str, timeout_ms: int = SCHEMA_TIMEOUT_MS) -> Any:
    """`schema` (JSON) from the first remote that answers within `timeout_ms` (to connect,
    then to answer); OSError naming each remote's failure otherwise."""
    errors = []
    for remote in remotes:
        try:
            reply = request(remote, "get_schema", [schema], timeout_ms)
        except OSError as exc:
            errors.append(f"{remote}: {exc.strerror}")
            continue
        if reply.error:
            errors.append(f"{remote}: {reply.error}")
        else:
            return reply.result
    raise OSError(f"cannot get the {schema} schema: " + "; ".join(errors))


def schema_helper(
    remotes: Sequence[str],
    schema: str,
    tables: Mapping[str, Sequence[str]] | Sequence[str],
    timeout_ms: int = SCHEMA_TIMEOUT_MS,
) -> ovs_idl.SchemaHelper:
    """The helper an IDL of `schema` is built from, registering `tables` (names, or names
    to the columns wanted); OSError as `fetch_schema`."""
    helper = ovs_idl.SchemaHelper(schema_json=fetch_schema(remotes, schema, timeout_ms))
    if isinstance(tables, Mapping):
        for table, columns in tables.items():
            helper.register_columns(table, list(columns))
    else:
        for table in tables:
            helper.register_table(table)
    return helper


class PendingSSLStream(stream.SSLStream):
    """python-ovs' `ssl:` stream, whose `recv_wait` also wakes for bytes OpenSSL already
    holds. A read of 4096 bytes can leave the rest of a TLS record (up to 16 KB) decrypted
    inside OpenSSL, where polling the socket does not see it: an IDL that stops reading
    at a message boundary (`Idl.run` handles 50 messages a call) would leave an update
    there until the next packet arrives (the next update, or an inactivity probe)."""

    def recv_wait(self, poller: Any) -> None:
        """Wake at once when OpenSSL holds decrypted bytes, else wait for the socket
        (before the handshake completes, and once closed, `pending()` is 0)."""
        if self.socket is not None and self.socket.pending() > 0:
            poller.immediate_wake()
        else:
            super().recv_wait(poller)


def set_ssl(private_key: Path, certificate: Path, ca_cert: Path) -> None:
    """Key, certificate and CA for every `ssl:` remote of this process (python-ovs keeps
    them process-wide), and `PendingSSLStream` as its `ssl:` stream, so every python-ovs
    and ovsdbapp client here sees an update as soon as it is in."""
    stream.Stream.register_method("ssl", PendingSSLStream)
    stream.Stream.ssl_set_private_key_file(str(private_key))
    stream.Stream.ssl_set_certificate_file(str(certificate))
    stream.Stream.ssl_set_ca_cert_file(str(ca_cert))
