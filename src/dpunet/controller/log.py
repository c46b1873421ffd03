"""Structured logs: one line per event, `key=value` pairs (values quoted when needed)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def _value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def kv(**fields: Any) -> str:
    """`k1=v1 k2=v2` (None values left out)."""
    return " ".join(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log one event line: `event=<name> k=v ...`."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s", kv(event=name, **fields))


def setup_logging(level: str) -> None:
    """Send the controller's logs to stderr, one key=value line per event."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger("dpunet")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
