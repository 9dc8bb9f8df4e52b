"""YAML configuration files read into strict pydantic models, with ``--set NAME=VALUE`` overrides.

The one config module of geoseg: YAML reading (:func:`read_yaml_mapping`, errors with line and
column), ``--set`` values (:func:`parse_override`), ``${NAME}`` templating
(:func:`resolve_refs`) and validation messages (:func:`validation_message`: file, field, value)
for pipelines of every kind (:mod:`geoseg.pipeline.config` holds their schema), training
(``geoseg train nn``), quantization, architecture search and sequence training configs. A
misspelt key is an error that names the file and the field; values given with ``--set`` are
parsed as YAML, and dotted keys (``optimizer.lr=1e-3``) reach into sections.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from geoseg.errors import ConfigError

if TYPE_CHECKING:  # pydantic is loaded by the code that validates, not by a look at a file
    from pydantic import BaseModel, ValidationError

__all__ = ["apply_overrides", "load_config", "parse_override", "parse_yaml_mapping", "pipeline_kind", "read_yaml_mapping", "resolve_refs", "validation_message"]

ModelT = TypeVar("ModelT", bound="BaseModel")
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_yaml_mapping(text: str, source: str, what: str) -> dict[str, Any]:
    """The mapping at the top of YAML text (empty text gives ``{}``).

    Raises
    ------
    ConfigError
        Not YAML (the message names ``source``, the line and the column), or not a mapping;
        ``what`` (e.g. "training config") names the kind of file in the message.

    Examples
    --------
    >>> parse_yaml_mapping("steps: [a", "p.yaml", "pipeline")
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: p.yaml: line 1, column 10: invalid YAML: expected ',' or ']', but got '<stream end>'
    """
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{where} invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a {what} must be a YAML mapping of keys, not a {type(raw).__name__}")
    return raw


def read_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file gives ``{}``); see :func:`parse_yaml_mapping`.

    Raises
    ------
    ConfigError
        The file cannot be read, is not UTF-8 text or YAML, or is not a mapping.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_yaml_mapping(text, str(path), what)


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


def validation_message(exc: ValidationError, prefix: str, skip_missing: frozenset[str] = frozenset()) -> str | None:
    """One line per pydantic error, each after ``prefix`` (e.g. ``"c.yaml: "``) naming the field and the value given.

    Errors of missing fields named in ``skip_missing`` are left out; ``None`` if that leaves none.
    """
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "missing" and loc in skip_missing:
            continue
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        given = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
        lines.append(f"{prefix}field '{loc}': {msg}{given}")
    return "; ".join(lines) if lines else None


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


def resolve_refs(value: Any, params: dict[str, Any]) -> tuple[Any, set[str]]:
    """Substitute ``${NAME}`` references to parameters (in strings, lists and mappings); return the value and the names left unset.

    A value that is only ``${NAME}`` takes the parameter's value as it is (typed); ``${NAME}``
    inside a longer string is replaced textually. A parameter set to ``None`` is unset.

    Raises
    ------
    ConfigError
        A reference to a name that is not among ``params``.

    Examples
    --------
    >>> resolve_refs({"model": "${model}", "out": "${city}_roads"}, {"model": None, "city": "Ottawa"})
    ({'model': None, 'out': 'Ottawa_roads'}, {'model'})
    """
    if isinstance(value, str):
        whole = _REF.fullmatch(value.strip())
        if whole:
            name = whole.group(1)
            if name not in params:
                raise ConfigError(f"reference to undeclared pipeline parameter ${{{name}}}")
            return (None, {name}) if params[name] is None else (params[name], set())
        unset: set[str] = set()

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in params:
                raise ConfigError(f"reference to undeclared pipeline parameter ${{{name}}}")
            if params[name] is None:
                unset.add(name)
                return ""
            return str(params[name])

        out = _REF.sub(sub, value)
        return (None, unset) if unset else (out, set())
    if isinstance(value, list):
        items, unset = [], set()
        for v in value:
            r, u = resolve_refs(v, params)
            items.append(r)
            unset |= u
        return items, unset
    if isinstance(value, dict):
        out_d, unset = {}, set()
        for k, v in value.items():
            r, u = resolve_refs(v, params)
            out_d[k] = r
            unset |= u
        return out_d, unset
    return value, set()


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
        raise ConfigError(validation_message(exc, f"{source}: ") or source) from None
