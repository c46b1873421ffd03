"""python-ovs decodes OVSDB messages with the compiled JSON parser that
scripts/install-deps.sh links from Debian's python3-openvswitch into the venv, and that
parser reads what the pure-Python one reads (the two come from different OVS releases)."""

from __future__ import annotations

import json

import ovs.json
import pytest
from ovs import jsonrpc

UPDATE = {
    "method": "update3",
    "params": [
        None,
        "00000000-0000-0000-0000-000000000000",
        {
            "Port_Binding": {
                f"{i:08x}-1111-2222-3333-444444444444": {
                    "modify": {
                        "up": True,
                        "mac": ["0a:58:c6:12:00:05 198.18.0.5"],
                        "external_ids": ["map", [["dpunet.io/owner", "dpunet"], ["é", "ü"]]],
                    }
                }
                for i in range(200)
            }
        },
    ],
    "id": None,
}


def parse_with(parser_kind: str, text: str, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(ovs.json, "PARSER", parser_kind)
    return ovs.json.from_string(text)


def test_the_venv_has_the_compiled_parser() -> None:
    assert ovs.json.PARSER == ovs.json.PARSER_C, "run scripts/install-deps.sh"


def test_both_parsers_read_an_update_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    text = json.dumps(UPDATE, ensure_ascii=False)
    compiled = parse_with(ovs.json.PARSER_C, text, monkeypatch)
    python = parse_with(ovs.json.PARSER_PY, text, monkeypatch)
    assert compiled == python == UPDATE


@pytest.mark.parametrize("bad", ['{"method": "update3", "params": [', '{"a": tru}', "[1, 2] 3"])
def test_both_parsers_refuse_bad_text(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in (ovs.json.PARSER_C, ovs.json.PARSER_PY):
        assert isinstance(parse_with(kind, bad, monkeypatch), str), kind  # an error message


def test_a_message_fed_in_reads_is_assembled() -> None:
    """jsonrpc feeds the compiled parser the text of each 4096-byte read as it comes."""
    text = json.dumps(UPDATE, ensure_ascii=False)
    parser = ovs.json.Parser()
    for start in range(0, len(text), 4096):
        assert not parser.is_done()
        parser.feed(text[start : start + 4096])
    assert parser.is_done()
    message = jsonrpc.Message.from_json(parser.finish())
    assert isinstance(message, jsonrpc.Message) and message.params == UPDATE["params"]
