"""dpunet.settings.read_config_file: the one reader of YAML/JSON config files, whose
errors name the file (each caller's own tests check only that they surface)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from dpunet.settings import SettingsError, describe, load_settings, read_config_file


class Named(BaseModel):
    name: str = "default"


def test_yaml_json_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\nb: {c: [x]}\n")
    assert read_config_file(path) == {"a": 1, "b": {"c": ["x"]}}
    path.write_text('{"a": 1}')
    assert read_config_file(path) == {"a": 1}
    path.write_text("# nothing set\n")
    assert read_config_file(path) == {}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read config file {path}: No such file or directory"),
        ("dir", "cannot read config file {path}: Is a directory"),
        (b"a: \xff\xfe\n", "config file {path} is not valid YAML/JSON: 'utf-8' codec"),
        ("a: [unclosed\n", "config file {path} is not valid YAML/JSON: while parsing"),
        ('{"a": 1,', "config file {path} is not valid YAML/JSON"),
        ("- a list\n", "config file {path} must hold a mapping of settings"),
        ("just words\n", "config file {path} must hold a mapping of settings"),
    ],
)
def test_unusable_files_are_one_error_naming_the_file(
    tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "c.yaml"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match="^" + re.escape(problem.format(path=path))):
        read_config_file(path)


def test_load_settings_reads_its_file_with_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- a list\n")
    with pytest.raises(SettingsError, match="must hold a mapping"):
        load_settings(Named, path, {})
    path.write_text("name: from-file\n")
    assert load_settings(Named, path, {"DPUNET_NAME": "from-env"}).name == "from-env"
    assert load_settings(Named, path, {}).name == "from-file"


class _Port(BaseModel):
    number: int

    @field_validator("number")
    @classmethod
    def _in_range(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError("not a port number")
        return value


class _Listener(BaseModel):
    port: _Port
    name: str


def test_a_validation_error_is_one_line_naming_each_field() -> None:
    with pytest.raises(ValidationError) as bad:
        _Listener.model_validate({"port": {"number": 0}})
    assert describe(bad.value) == "port.number: not a port number; name: Field required"
    flags = describe(bad.value, field=lambda loc: "--" + "-".join(map(str, loc)))
    assert flags == "--port-number: not a port number; --name: Field required"
    with pytest.raises(ValidationError) as whole:
        _Listener.model_validate([1])
    assert describe(whole.value, whole="listen") == (
        "listen: Input should be a valid dictionary or instance of _Listener"
    )
