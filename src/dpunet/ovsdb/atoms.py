"""OVSDB's JSON notation for column values (RFC 7047, 5.1), as read from raw replies.

A set is `["set", [...]]` unless it holds exactly one atom, which is sent bare; a map is
`["map", [[key, value], ...]]`. Anything else where a map is expected reads as empty.
"""

from __future__ import annotations

from typing import Any


def ovsdb_set(value: Any) -> list[Any]:
    """An OVSDB set (or a lone atom) as a list."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return list(value[1])
    return [value]


def ovsdb_map(value: Any) -> dict[str, str]:
    """An OVSDB map value as a dict of strings."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {str(k): str(v) for k, v in value[1]}
    return {}
