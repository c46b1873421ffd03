"""Structured logs: one line per event, `key=value` (default) or JSON.

`event(logger, "port-plugged", port="pf0vf1", lsp="ns_pod")` logs
`ts=2026-01-01T00:00:00.000Z level=info event=port-plugged port=pf0vf1 lsp=ns_pod`.
Records from other libraries come out in the same shape with `event=log msg=...`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

_FIELDS = "dpunet_fields"


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log event `name` with `fields` (None values are left out)."""
    if logger.isEnabledFor(level):
        kept = {k: v for k, v in fields.items() if v is not None}
        logger.log(level, name, extra={_FIELDS: kept})


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value)
    return str(value)


def _quote(text: str) -> str:
    if text == "" or any(c in text for c in ' "=\\\n\t'):
        return json.dumps(text)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, fmt: Literal["kv", "json"]) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, None) or {}
        created = time.gmtime(record.created)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z"
        head: dict[str, Any] = {"ts": ts, "level": record.levelname.lower()}
        if getattr(record, _FIELDS, None) is None:
            head |= {"event": "log", "logger": record.name, "msg": record.getMessage()}
        else:
            head["event"] = record.getMessage()
        if record.exc_info:
            fields = {**fields, "exc": self.formatException(record.exc_info).replace("\n", " | ")}
        if self.fmt == "json":
            return json.dumps(
                {**head, **{k: _json_value(v) for k, v in fields.items()}}, default=str
            )
        return " ".join(f"{k}={_quote(_text(v))}" for k, v in {**head, **fields}.items())


def _json_value(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(str(v) for v in value)
    return value


def configure(fmt: Literal["kv", "json"] = "kv", level: str = "info") -> None:
    """Send every log record to stderr in the structured format, at `level` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # python-ovs/ovsdbapp are chatty at INFO about every reconnect attempt, httpx about
    # every request
    for noisy in ("ovsdbapp", "ovs", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
