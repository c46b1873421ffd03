"""`dpunet policies apply -f` (issue 16): the documents are PUT at once, so the controller
admits them in shared passes, and each is answered on its own. A fake client stands in for
ControllerClient."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dpunet.cli.policies_cmds import apply_manifests
from dpunet.contract.client import ClientError
from dpunet.contract.policy import PolicyInfo


class FakeClient:
    """Answers a PUT only once `together` PUTs are in flight (a client sending one after
    another never gets there); refuses the names in `refuse`."""

    def __init__(self, together: int, refuse: frozenset[str] = frozenset()) -> None:
        self.barrier = threading.Barrier(together, timeout=5)
        self.refuse = refuse

    def put_policy(self, namespace: str, name: str, doc: dict[str, Any]) -> PolicyInfo:
        self.barrier.wait()
        if name in self.refuse:
            raise ClientError(422, f"spec of {name} is invalid")
        return PolicyInfo(
            namespace=namespace, name=name, spec=doc["spec"], port_group=f"pg_{name}",
            pods=[], acls=1,
        )  # fmt: skip


def _docs(n: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [("a", f"p{i}", {"spec": {"podSelector": {}}}) for i in range(n)]


def test_documents_are_sent_at_once_and_answered_in_order() -> None:
    applied = apply_manifests(FakeClient(8), _docs(8))  # type: ignore[arg-type]
    assert [(p["name"], p["port_group"]) for p in applied] == [
        (f"p{i}", f"pg_p{i}") for i in range(8)
    ]


def test_a_refused_document_is_named_and_the_others_applied(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = FakeClient(3, frozenset({"p1"}))
    with pytest.raises(SystemExit) as exit_:
        apply_manifests(client, _docs(3))  # type: ignore[arg-type]
    assert exit_.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "a/p1: spec of p1 is invalid" in err
    assert "1 of 3 policies refused; applied: a/p0, a/p2" in err
