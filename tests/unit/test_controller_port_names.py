"""Which row holds an LSP name, from the rows the NB connection keeps current: what a
port request reads before it allocates, answered without a read when the kept rows can
tell, and "cannot tell" (None: read instead) whenever they might be behind."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from controller_records import CFG, HOST1, POD

from dpunet.controller.nbcommands import LR, LS, LSP, PortRows, Snapshot
from dpunet.controller.topology import pod_lsp


def _row(name: str, pod: bool = True, row: uuid.UUID | None = None, **changes: Any) -> Any:
    """An LSP row as python-ovs hands it to the change listener (columns as attributes)."""
    spec = pod_lsp(CFG, HOST1, POD)
    return SimpleNamespace(
        uuid=row or uuid.uuid4(),
        name=name,
        type="",
        addresses=list(spec.addresses),
        port_security=list(spec.port_security),
        options=dict(spec.options),
        external_ids=dict(spec.external_ids) if pod else {"owner": "someone-else"},
        up=[False],
        _data=None,  # read_column falls back to the attributes
        _changes=changes or None,
        _mutations=None,
    )


def _everywhere(row: uuid.UUID) -> bool:
    return True


def test_an_unknown_name_is_free() -> None:
    assert PortRows().by_name("default_web", _everywhere) == (None, False)


def test_a_pod_port_and_a_foreign_port_are_told_apart() -> None:
    rows = PortRows()
    mine, theirs = _row("default_web"), _row("external", pod=False)
    rows.changed(False, mine)
    rows.changed(False, theirs)
    port, foreign = rows.by_name("default_web", _everywhere) or (None, None)
    assert port is not None and port.uuid == mine.uuid and port.port == POD and not foreign
    assert rows.by_name("external", _everywhere) == (None, True)


def test_a_deleted_or_renamed_port_frees_its_name() -> None:
    rows = PortRows()
    row = _row("default_web")
    rows.changed(False, row)
    rows.changed(True, row)
    assert rows.by_name("default_web", _everywhere) == (None, False)
    renamed = _row("default_web")
    rows.changed(False, renamed)
    rows.changed(False, _row("default_web2", row=renamed.uuid))
    assert rows.by_name("default_web", _everywhere) == (None, False)
    assert rows.by_name("default_web2", _everywhere) is not None


def test_a_name_taken_over_by_a_new_row_points_there() -> None:
    rows = PortRows()
    old, new = _row("default_web"), _row("default_web")
    rows.changed(False, old)
    rows.changed(False, new)  # (the old row's delete comes in the same update)
    rows.changed(True, old)
    found = rows.by_name("default_web", _everywhere)
    assert found is not None and found[0] is not None and found[0].uuid == new.uuid


def test_the_kept_rows_cannot_tell_while_a_transaction_changes_the_row() -> None:
    rows = PortRows()
    row = _row("default_web")
    rows.changed(False, row)
    rows.changed(False, _row("default_web", row=row.uuid, addresses=["changing"]))
    assert rows.by_name("default_web", _everywhere) is None


def test_the_kept_rows_cannot_tell_for_a_row_gone_from_the_replica() -> None:
    rows = PortRows()
    row = _row("default_web")
    rows.changed(False, row)  # then a resync dropped it without a delete
    assert rows.by_name("default_web", lambda r: r != row.uuid) is None


def test_rows_a_resync_dropped_are_forgotten_by_the_next_snapshot() -> None:
    """python-ovs drops the rows deleted while it was away without a delete; the snapshot's
    run forgets them, and keeps the rest."""
    rows = PortRows()
    gone = [_row(f"default_gone{i}") for i in range(50)]
    stays = _row("default_web")
    for row in [*gone, stays]:
        rows.changed(False, row)
    tables = {LS: {}, LR: {}, LSP: {stays.uuid: stays}}  # the replica after the resync
    api = SimpleNamespace(tables={t: SimpleNamespace(rows=r) for t, r in tables.items()})
    snapshot = Snapshot(api, rows)
    snapshot.run_idl(None)
    assert [p.name for p in snapshot.result.ports] == ["default_web"]
    assert set(rows._kept) == set(rows._row_names) == {stays.uuid}
    assert rows._names == {"default_web": stays.uuid}
    assert rows.by_name("default_gone0", _everywhere) == (None, False)
    assert rows.by_name("default_web", _everywhere) is not None
