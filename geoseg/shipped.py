"""The pipelines and training configs shipped inside the geoseg package.

They live in the repository's top-level ``pipelines/`` folder and are installed as the data-only
package ``geoseg.pipelines`` (a ``package-dir`` mapping in ``pyproject.toml``), so a wheel, an
editable install and a source checkout all find them here through :mod:`importlib.resources`.

Names are file stems: ``road_centerlines`` is ``pipelines/road_centerlines.yaml``, and the
training config ``road_decouple`` is ``pipelines/training/road_decouple.yaml``.

Examples
--------
>>> from geoseg.shipped import shipped_names, shipped_path
>>> "mask_to_centerlines" in shipped_names("pipeline")
True
>>> shipped_path("road_decouple", "training").name
'road_decouple.yaml'
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from geoseg.errors import ConfigError

__all__ = ["Kind", "SHIPPED_PACKAGE", "shipped_names", "shipped_path", "shipped_text", "resolve_file"]

#: The data package holding the shipped YAML files.
SHIPPED_PACKAGE = "geoseg.pipelines"

Kind = Literal["pipeline", "training"]
_SUBFOLDER: dict[str, str] = {"pipeline": "", "training": "training"}
_WHAT: dict[str, str] = {"pipeline": "pipeline", "training": "training config"}


def _folder(kind: Kind) -> Traversable:
    root = resources.files(SHIPPED_PACKAGE)
    sub = _SUBFOLDER[kind]
    return root / sub if sub else root


def shipped_names(kind: Kind) -> list[str]:
    """Sorted names of the shipped files of one kind.

    Parameters
    ----------
    kind : {"pipeline", "training"}
        Pipelines (``geoseg run NAME``) or training configs (``geoseg train nn NAME``,
        ``geoseg search arch NAME``, ``geoseg train sequence NAME``).

    Returns
    -------
    list of str
        File stems, e.g. ``["deep_road_centerlines", "mask_to_centerlines", ...]``.
    """
    folder = _folder(kind)
    if not folder.is_dir():
        return []
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.is_file() and entry.name.endswith(".yaml"))


def shipped_text(name: str, kind: Kind) -> str:
    """The YAML text of a shipped file, exactly as shipped.

    Unlike :func:`shipped_path`, this also works when geoseg is imported from a zip archive.

    Parameters
    ----------
    name : str
        The file's stem, e.g. ``road_centerlines``.
    kind : {"pipeline", "training"}
        Pipelines or training configs.

    Returns
    -------
    str
        The file's text.

    Raises
    ------
    KeyError
        No shipped file of that kind and name.

    Examples
    --------
    >>> shipped_text("road_decouple", "pipeline")  # a training config, not a pipeline
    Traceback (most recent call last):
    ...
    KeyError: 'road_decouple'
    """
    if name not in shipped_names(kind):
        raise KeyError(name)
    return (_folder(kind) / f"{name}.yaml").read_text(encoding="utf-8")


def shipped_path(name: str, kind: Kind) -> Path:
    """File-system path of a shipped file (packages installed as folders, as pip does).

    Parameters
    ----------
    name : str
        The file's stem, e.g. ``road_centerlines``.
    kind : {"pipeline", "training"}
        Pipelines or training configs.

    Returns
    -------
    pathlib.Path
        The shipped YAML file.

    Raises
    ------
    KeyError
        No shipped file of that kind and name.
    ConfigError
        geoseg is imported from a zip archive.

    Examples
    --------
    >>> path = shipped_path("road_decouple", "training")
    >>> path.parent.name, path.name, path.is_file()
    ('training', 'road_decouple.yaml', True)
    """
    if name not in shipped_names(kind):
        raise KeyError(name)
    entry = _folder(kind) / f"{name}.yaml"
    if not isinstance(entry, Path):
        raise ConfigError(f"{name}: geoseg is imported from a zip archive; its shipped files need an unpacked install (pip)")
    return entry


def resolve_file(name: str | os.PathLike[str], kind: Kind) -> Path:
    """A user's YAML file, or the shipped file of ``kind`` called ``name``.

    ``name`` is taken as a file when it has a ``.yaml``/``.yml`` suffix, a folder part, or
    exists in the working folder (a user's file wins over a shipped one of the same name);
    otherwise it must be the name of a shipped file.

    Parameters
    ----------
    name : path-like
        ``road_centerlines``, ``road_decouple``, ``my_pipeline.yaml``, ``configs/train``.
    kind : {"pipeline", "training"}
        Which shipped files a bare name refers to.

    Returns
    -------
    pathlib.Path
        The file to read (a user's file is not checked for existence here: reading it
        reports that).

    Raises
    ------
    ConfigError
        A bare name that is neither a file here nor a shipped file; the message lists the
        shipped names.

    Examples
    --------
    >>> resolve_file("road_centerlines", "pipeline").name
    'road_centerlines.yaml'
    >>> str(resolve_file("mine.yaml", "pipeline"))
    'mine.yaml'
    >>> resolve_file("configs/train", "training").as_posix()
    'configs/train'
    >>> try:
    ...     resolve_file("no_such_pipeline", "pipeline")
    ... except ConfigError as exc:
    ...     print(str(exc).split(" (shipped:")[0])
    no_such_pipeline: no such pipeline file, and no shipped pipeline of that name
    """
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or len(path.parts) != 1 or path.exists():
        return path
    try:
        return shipped_path(path.name, kind)
    except KeyError:
        what = _WHAT[kind]
        raise ConfigError(
            f"{name}: no such {what} file, and no shipped {what} of that name (shipped: {', '.join(shipped_names(kind))}; `geoseg pipelines` lists them)"
        ) from None
