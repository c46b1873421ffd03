"""Loading a daemon's settings: defaults < YAML/JSON file < `DPUNET_*` env < flags.

Each daemon describes its settings as one pydantic model; `load_settings` fills it
from those sources, in that order of precedence, and turns every problem into
one readable `SettingsError` line naming the field. `read_config_file` is the one
reader of such files (dpunet-dpu's config and `dpunet verify` use it too).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ENV_PREFIX = "DPUNET_"

M = TypeVar("M", bound=BaseModel)


class SettingsError(ValueError):
    """The settings are unreadable or invalid (message is for a person)."""


def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON config file as a dict (an empty file: {}); SettingsError naming the
    file when it is unreadable, not YAML/JSON or not a mapping."""
    import yaml  # only with a config file: dpunet-dpu keeps its memory small without one

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping of settings")
    return data


def _from_env(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    """`DPUNET_<FIELD>` values; list fields are comma-separated."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        is_list = getattr(field.annotation, "__origin__", None) is list
        out[name] = [v.strip() for v in raw.split(",") if v.strip()] if is_list else raw
    return out


def describe(
    exc: ValidationError,
    whole: str = "config",
    field: Callable[[tuple[int | str, ...]], str] | None = None,
) -> str:
    """A pydantic error as the one line dpunet's messages use: `field: what is wrong; ...`,
    each field its dotted location (`whole` for a problem of the input as a whole), or what
    `field` makes of the location; pydantic's "Value error, " prefix dropped."""
    parts = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = field(loc) if field is not None else ".".join(str(p) for p in loc) or whole
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def load_settings(
    model: type[M],
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> M:
    """Defaults < file < environment (`os.environ` when None) < overrides (None values skipped)."""
    data = read_config_file(path) if path is not None else {}
    data.update(_from_env(model, os.environ if environ is None else environ))
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(f"invalid settings: {describe(exc)}") from exc
