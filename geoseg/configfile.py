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

__all__ = [
    "apply_overrides",
    "load_config",
    "parse_override",
    "parse_yaml_mapping",
    "pipeline_kind",
    "read_yaml_mapping",
    "resolve_refs",
    "training_command",
    "validation_message",
]

ModelT = TypeVar("ModelT", bound="BaseModel")
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_yaml_mapping(text: str, source: str, what: str) -> dict[str, Any]:
    """The mapping at the top of YAML text (empty text gives ``{}``).

    Any other YAML value that is false (``null``, ``0``, ``false``, ``[]``) also gives ``{}``.

    Parameters
    ----------
    text : str
        The YAML text.
    source : str
        Where the text comes from (a file name), named in messages.
    what : str
        The kind of file (e.g. "training config"), named in messages.

    Returns
    -------
    dict of str to Any
        The top-level mapping, as :func:`yaml.safe_load` reads it.

    Raises
    ------
    ConfigError
        Not YAML (the message names ``source``, the line and the column), or not a mapping.

    Examples
    --------
    >>> parse_yaml_mapping("kind: scene\\nsteps: [a, b]", "p.yaml", "pipeline")
    {'kind': 'scene', 'steps': ['a', 'b']}
    >>> parse_yaml_mapping("- a", "p.yaml", "pipeline")
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: p.yaml: a pipeline must be a YAML mapping of keys, not a list
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

    Parameters
    ----------
    path : path-like
        The YAML file.
    what : str
        The kind of file (e.g. "pipeline"), named in messages.

    Returns
    -------
    dict of str to Any
        The top-level mapping.

    Raises
    ------
    ConfigError
        The file cannot be read, is not UTF-8 text or YAML, or is not a mapping.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "train.yaml"
    ...     _ = path.write_text("epochs: 3\\noptimizer: {lr: 0.01}\\n", encoding="utf-8")
    ...     raw = read_yaml_mapping(path, "training config")
    >>> raw
    {'epochs': 3, 'optimizer': {'lr': 0.01}}
    >>> read_yaml_mapping("no/such.yaml", "pipeline")
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: no/such.yaml: cannot read pipeline (No such file or directory)
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

    Parameters
    ----------
    name : path-like
        A pipeline file or the name of a shipped pipeline (see
        :func:`geoseg.shipped.resolve_file`).

    Returns
    -------
    str or None
        The pipeline's ``kind``, or None when it cannot be read.

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

    Parameters
    ----------
    exc : pydantic.ValidationError
        The error of a validation.
    prefix : str
        Put before each line, e.g. the file name.
    skip_missing : frozenset of str, default frozenset()
        Dotted names of fields whose "missing" errors are left out.

    Returns
    -------
    str or None
        The lines, joined with ``"; "``; None when no error is left.

    Examples
    --------
    >>> from pydantic import BaseModel, ConfigDict, ValidationError
    >>> class Train(BaseModel):
    ...     model_config = ConfigDict(extra="forbid")
    ...     epochs: int
    ...     lr: float = 0.01
    >>> try:
    ...     Train.model_validate({"lr": "fast", "epoch": 3})
    ... except ValidationError as exc:
    ...     message = validation_message(exc, "t.yaml: ", frozenset({"epochs"}))
    >>> print(message.replace("; ", "\\n"))
    t.yaml: field 'lr': Input should be a valid number, unable to parse string as a number (got 'fast')
    t.yaml: field 'epoch': unknown field (got 3)
    """
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing" and loc in skip_missing:
            continue
        if not loc:  # a rule across fields: its message names them, and the whole config is no help
            lines.append(f"{prefix}{err['msg'].removeprefix('Value error, ')}")
            continue
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif err["type"] == "list_type" and isinstance(err.get("input"), str):
            msg += ", written in brackets: [1, 2, 3]"
        given = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
        lines.append(f"{prefix}field '{loc}': {msg}{given}")
    return "; ".join(lines) if lines else None


def parse_override(text: str, *, structured: bool = False) -> tuple[str, Any]:
    """Split ``NAME=VALUE`` (a ``--set`` value; NAME may be dotted) and parse VALUE as YAML:
    ``3`` -> int, ``true`` -> bool, ``[1, 2]`` -> list; text that is not YAML stays a string.

    Mappings (``{a: 1}``) are kept only when ``structured`` (training configs, whose sections
    are mappings); for pipeline parameters, which are scalars, such text stays a string, and
    so does an empty value.

    Parameters
    ----------
    text : str
        ``NAME=VALUE``; spaces around NAME are dropped.
    structured : bool, default False
        Keep YAML mappings as dicts (else they stay strings).

    Returns
    -------
    tuple of (str, Any)
        NAME and the parsed VALUE.

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
    inside a longer string is replaced textually. A parameter set to ``None`` is unset: a
    string that refers to one becomes ``None``.

    Parameters
    ----------
    value : Any
        A value of a pipeline file: a string, a list or a mapping (searched in depth), or any
        other value (returned as it is).
    params : dict of str to Any
        The pipeline's parameters and their values (``None``: unset).

    Returns
    -------
    value : Any
        ``value`` with the references substituted (lists and mappings are new objects).
    unset : set of str
        The names of the unset parameters that ``value`` refers to.

    Raises
    ------
    ConfigError
        A reference to a name that is not among ``params``.

    Examples
    --------
    >>> resolve_refs({"model": "${model}", "out": "${city}_roads"}, {"model": None, "city": "Ottawa"})
    ({'model': None, 'out': 'Ottawa_roads'}, {'model'})
    >>> resolve_refs(["${size}", "${model}.onnx", 7], {"size": 512, "model": None})
    ([512, None, 7], {'model'})
    >>> resolve_refs("${gsd}", {})
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: reference to undeclared pipeline parameter ${gsd}
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

    Each value is parsed by :func:`parse_override` with ``structured=True``. A dotted key
    creates the sections it names when they are missing (or ``None``).

    Parameters
    ----------
    raw : dict of str to Any
        The config as read (not modified).
    overrides : sequence of str
        ``NAME=VALUE`` texts, applied in order.

    Returns
    -------
    dict of str to Any
        A copy of ``raw`` with the overrides applied.

    Raises
    ------
    ConfigError
        An override without ``=`` or with an empty name, or one that descends into a
        value that is not a mapping.

    Examples
    --------
    >>> raw = {"epochs": 10, "optimizer": {"name": "adam", "lr": 0.01}}
    >>> apply_overrides(raw, ["optimizer.lr=0.001", "epochs=5", "augment.flip=true"])
    {'epochs': 5, 'optimizer': {'name': 'adam', 'lr': 0.001}, 'augment': {'flip': True}}
    >>> raw["optimizer"]["lr"]
    0.01
    >>> apply_overrides(raw, ["epochs.max=3"])
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: --set epochs.max: epochs is not a section
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


def training_command(config: dict[str, Any]) -> str:
    """The command that reads a training config, told by its top-level keys.

    ``tests/cli/test_pipelines_cmd.py`` checks that every shipped config validates against the
    config model of the command named here.

    Examples
    --------
    >>> training_command({"epochs": 30, "data": {}})
    'geoseg train nn'
    >>> training_command({"search": {"gcn": True}})
    'geoseg search arch'
    """
    if "frame_size" in config or "n_frames" in config:
        return "geoseg train sequence"
    if {"search", "latency", "retrain", "space"} & set(config):
        return "geoseg search arch"
    return "geoseg train nn"


def load_config(model: type[ModelT], path: str | Path | None, overrides: Sequence[str], what: str, *, command: str | None = None) -> ModelT:
    """Read ``path`` (``None``: the model's defaults), apply ``overrides`` and validate.

    Parameters
    ----------
    model : type of pydantic.BaseModel
        The config's schema.
    path : str, pathlib.Path or None
        The YAML file; ``None`` starts from an empty mapping (the model's defaults).
    overrides : sequence of str
        ``--set`` texts, applied by :func:`apply_overrides`.
    what : str
        The kind of config (e.g. "training config"), named in messages.
    command : str, optional
        The command that reads training configs of this model (``geoseg train nn``): an invalid
        file that is another command's config (:func:`training_command`) is said to be that.

    Returns
    -------
    ModelT
        The validated config, an instance of ``model``.

    Raises
    ------
    ConfigError
        Unreadable YAML, a malformed override, a misspelt or invalid field (the message
        names the ``--set`` that made it, else the file, ``<defaults>`` without one, and the field).

    Examples
    --------
    >>> from pydantic import BaseModel, ConfigDict
    >>> class Train(BaseModel):
    ...     model_config = ConfigDict(extra="forbid")
    ...     epochs: int = 10
    ...     lr: float = 0.01
    >>> load_config(Train, None, ["lr=0.001"], "training config")
    Train(epochs=10, lr=0.001)
    >>> load_config(Train, None, ["epoch=5"], "training config")
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: --set epoch=5: field 'epoch': unknown field (got 5)
    """
    from pydantic import ValidationError

    source = str(path) if path is not None else "<defaults>"
    raw = read_yaml_mapping(path, what) if path is not None else {}
    try:
        return model.model_validate(apply_overrides(raw, list(overrides)))
    except ValidationError as exc:
        if command is not None and path is not None and (other := training_command(raw)) != command:
            raise ConfigError(f"{source}: a config for `{other}`, not for `{command}`") from None
        raise ConfigError(_culprit(model, raw, list(overrides)) or validation_message(exc, f"{source}: ") or source) from None


def _culprit(model: type[BaseModel], raw: dict[str, Any], overrides: list[str]) -> str | None:
    """The message naming the ``--set`` items that make ``raw`` invalid: the first that does alone, else the fewest that do together (None: the file itself)."""
    from pydantic import ValidationError

    try:
        model.model_validate(raw)
    except ValidationError:
        return None
    for text in overrides:
        try:
            model.model_validate(apply_overrides(raw, [text]))
        except ValidationError as exc:
            return validation_message(exc, f"--set {text}: ")
    needed = list(overrides)
    for text in overrides:  # several together (data.batch_size=1 with data.crop_px=64): keep those the error needs
        rest = [t for t in needed if t != text]
        try:
            model.model_validate(apply_overrides(raw, rest))
        except ValidationError:
            needed = rest
    try:
        model.model_validate(apply_overrides(raw, needed))
    except ValidationError as exc:
        return validation_message(exc, " ".join(f"--set {t}" for t in needed) + " (together): ")
    return None
