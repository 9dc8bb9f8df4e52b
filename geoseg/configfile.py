"""YAML configuration files read into strict pydantic models, with ``--set NAME=VALUE`` overrides.

Shared by every declarative config that is not a pipeline: training (``geoseg train nn``),
quantization, architecture search and sequence training. A misspelt key is an error that
names the file and the field; values given with ``--set`` are parsed as YAML, and dotted
keys (``optimizer.lr=1e-3``) reach into sections. :func:`parse_override` is the one parser of
``--set`` values, for these configs and for pipeline parameters alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from geoseg.errors import ConfigError

if TYPE_CHECKING:  # pydantic is loaded by the code that validates, not by a look at a file
    from pydantic import BaseModel, ValidationError

__all__ = ["apply_overrides", "load_config", "parse_override", "pipeline_kind", "read_yaml_mapping", "validation_message"]

ModelT = TypeVar("ModelT", bound="BaseModel")


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file gives ``{}``).

    Raises
    ------
    ConfigError
        The file cannot be read, is not YAML, or is not a mapping; ``what`` (e.g.
        "training config") names the kind of file in the message.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {what} is a mapping of keys")
    return raw


def pipeline_kind(name: str | os.PathLike[str]) -> str | None:
    """The ``kind`` of a pipeline file or shipped pipeline (``"scene"`` when it names none).

    Reads only the YAML, so that commands can tell scene from sequence pipelines before
    loading the libraries a pipeline needs. None when the pipeline cannot be found or read,
    or is an empty or invalid file: loading it reports why.

    Examples
    --------
    >>> pipeline_kind("mask_to_centerlines"), pipeline_kind("no/such/pipeline.yaml")
    ('scene', None)
    """
    from geoseg.shipped import resolve_file

    try:
        raw = read_yaml_mapping(resolve_file(name, "pipeline"), "pipeline")
    except (ConfigError, UnicodeDecodeError):
        return None
    return str(raw.get("kind", "scene")) if raw else None


def validation_message(exc: ValidationError, source: str) -> str:
    """One line naming ``source`` and every invalid or unknown field of a pydantic error."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{where}: {msg}")
    return f"{source}: " + "; ".join(parts)


def parse_override(text: str, *, structured: bool = False) -> tuple[str, Any]:
    """Split ``NAME=VALUE`` (a ``--set`` value; NAME may be dotted) and parse VALUE as YAML:
    ``3`` -> int, ``true`` -> bool, ``[1, 2]`` -> list; text that is not YAML stays a string.

    Mappings (``{a: 1}``) are kept only when ``structured`` (training configs, whose sections
    are mappings); for pipeline parameters, which are scalars, such text stays a string, and
    so does an empty value.

    Raises
    ------
    ConfigError
        No ``=``, or an empty NAME.

    Examples
    --------
    >>> parse_override("sigma_m=2.5"), parse_override("name={stem}"), parse_override("x={a: 1}", structured=True)
    (('sigma_m', 2.5), ('name', '{stem}'), ('x', {'a': 1}))
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(f"--set {text!r}: expected NAME=VALUE")
    if not key:
        raise ConfigError(f"--set {text!r}: empty name")
    if not structured and not raw.strip():
        return key, ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return key, raw
    if not structured and isinstance(value, (dict, set)):
        return key, raw
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dict.

    Raises
    ------
    ConfigError
        An override without ``=`` or that descends into a non-mapping.
    """
    out = dict(raw)
    for text in overrides:
        key, value = parse_override(text, structured=True)
        path = key.split(".")
        node = out
        for part in path[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {} if child is None else child
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
            node[part] = child
            node = child
        node[path[-1]] = value
    return out


def load_config(model: type[ModelT], path: str | Path | None, overrides: Sequence[str], what: str) -> ModelT:
    """Read ``path`` (``None``: the model's defaults), apply ``overrides`` and validate.

    Raises
    ------
    ConfigError
        Unreadable YAML, a misspelt or invalid field (the message names the file and field).
    """
    from pydantic import ValidationError

    source = str(path) if path is not None else "<defaults>"
    raw = read_yaml_mapping(path, what) if path is not None else {}
    try:
        return model.model_validate(apply_overrides(raw, list(overrides)))
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source)) from None
