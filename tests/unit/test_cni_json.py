"""The shim's own JSON codec, checked against the standard library's json module."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dpunet.cni.shim import run
from dpunet.cni.wire import MAX_JSON_DEPTH, ErrorCode, json_dumps, json_loads

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=25,
)
near_json = st.text(alphabet='{}[]",:0123456789.eE+- \t\n\\/uabdfnrtlsx', max_size=40)


@given(json_values)
def test_dumps_matches_the_stdlib(value: object) -> None:
    assert json_dumps(value) == json.dumps(value)


@given(json_values)
def test_loads_reads_what_the_stdlib_writes(value: object) -> None:
    assert json_loads(json.dumps(value)) == value
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    assert json_loads(pretty) == value


@given(st.one_of(near_json, st.text(max_size=40), json_values.map(json.dumps)))
@example('"\\ud800\\u0041"')
@example('"\\ud83d\\ude00"')
@example('"\\udc00"')
@example("1e400")
@example("-0")
def test_loads_agrees_with_the_stdlib_on_any_text(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            json_loads(text)
        return
    if "NaN" in text or "Infinity" in text:  # accepted by the stdlib only, not JSON
        return
    assert json_loads(text) == expected
    assert repr(json_loads(text)) == repr(expected)  # same types: int vs float, -0.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "{",
        '{"a" 1}',
        "[1,]",
        "{,}",
        '{"a": 1,}',
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "tru",
        "nul",
        '"\\x"',
        '"\\u12"',
        '"a\nb"',
        "NaN",
        "-Infinity",
        "[1] x",
        '{"a": 1}}',
        "[" * 100_000,
        '{"a": 1}\x00',
    ],
)
def test_invalid_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        json_loads(text)


def test_a_realistic_config() -> None:
    text = ' {"cniVersion" : "1.0.0", "x": [1, -0, 0.5e-3, 2E+2, true, false, null, "\\u00e9\\/"]} '
    assert json_loads(text) == {
        "cniVersion": "1.0.0",
        "x": [1, 0, 0.0005, 200.0, True, False, None, "é/"],
    }


def test_dumps_refuses_what_json_cannot_carry() -> None:
    for value in (math.nan, math.inf, {1: 2}, {"a": object()}, b"bytes"):
        with pytest.raises((ValueError, TypeError)):
            json_dumps(value)
    assert json_dumps(("a", 1)) == '["a", 1]'
    assert json_dumps("\x7f\U0001f600") == json.dumps("\x7f\U0001f600")


@pytest.mark.parametrize("opener", ["[", '{"a": '])
def test_nesting_is_bounded(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    deepest = opener * MAX_JSON_DEPTH + "0" + closer * MAX_JSON_DEPTH
    assert json_loads(deepest) == json.loads(deepest)
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        with pytest.raises(ValueError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
            json_loads(opener * depth + "0" + closer * depth)


def test_the_shim_answers_a_deeply_nested_config_with_a_decode_error() -> None:
    env = {"CNI_COMMAND": "STATUS"}
    status, output = run(env, b'{"cniVersion": "1.1.0", "args": ' + b"[" * 100_000)
    assert status == 1
    assert output is not None and output["code"] == ErrorCode.DECODE_FAILURE
