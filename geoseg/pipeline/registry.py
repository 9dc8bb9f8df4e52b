"""The step registry: step types are found through the ``geoseg.steps`` entry-point group.

geoseg registers its own steps there (``pyproject.toml``) and any installed package can add
steps the same way::

    [project.entry-points."geoseg.steps"]
    my_filter = "my_package.steps:MyFilter"

Steps can also be registered at run time with :func:`register_step` (useful in notebooks
and tests).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from geoseg.errors import ConfigError, StepNotFoundError
from geoseg.pipeline.step import Step

__all__ = ["get_step_class", "available_steps", "register_step", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "geoseg.steps"

_runtime: dict[str, type[Step]] = {}


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def register_step(cls: type[Step]) -> type[Step]:
    """Register a step class under its ``type_name`` (usable as a decorator).

    A class registered here replaces one of the same name from the entry points.

    Parameters
    ----------
    cls : type of Step
        The step class.

    Returns
    -------
    type of Step
        ``cls`` itself.

    Raises
    ------
    ConfigError
        The class has no ``type_name``.
    """
    if not cls.type_name:
        raise ConfigError(f"step class {cls.__name__} has no type_name")
    _runtime[cls.type_name] = cls
    return cls


def get_step_class(type_name: str) -> type[Step]:
    """Return the step class registered as ``type_name``.

    Classes registered with :func:`register_step` come first, then the ``geoseg.steps`` entry
    points.

    Parameters
    ----------
    type_name : str
        The step type, as in a pipeline's ``type:``.

    Returns
    -------
    type of Step
        The step class.

    Raises
    ------
    StepNotFoundError
        No installed package registers this step type, or its entry point is not a
        :class:`~geoseg.pipeline.step.Step` class.

    Examples
    --------
    >>> get_step_class("skeletonize").__name__
    'Skeletonize'
    """
    if type_name in _runtime:
        return _runtime[type_name]
    ep = _entry_points().get(type_name)
    if ep is None:
        known = ", ".join(sorted(available_steps()))
        raise StepNotFoundError(f"unknown step type {type_name!r} (known: {known})")
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        raise StepNotFoundError(f"entry point {type_name!r} ({ep.value}) is not a geoseg Step")
    return cls


def available_steps() -> dict[str, type[Step]]:
    """All registered step types, by name."""
    found = {name: get_step_class(name) for name in _entry_points()}
    found.update(_runtime)
    return dict(sorted(found.items()))
