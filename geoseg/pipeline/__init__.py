"""The pipeline engine: step contract, registry, configuration, execution and batches.

The names below are imported on first use (PEP 562), so that importing a light submodule
(``geoseg.pipeline.batch``, ``geoseg.pipeline.distributed``) does not load the engine and its
geospatial libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geoseg.pipeline.engine import RunResult
    from geoseg.pipeline.pipeline import Pipeline, load_pipeline
    from geoseg.pipeline.registry import available_steps, get_step_class, register_step
    from geoseg.pipeline.step import Step, StepContext

__all__ = [
    "Pipeline",
    "load_pipeline",
    "RunResult",
    "Step",
    "StepContext",
    "available_steps",
    "get_step_class",
    "register_step",
]

#: Where each name of :data:`__all__` is defined.
_SOURCES: dict[str, str] = {
    "Pipeline": "geoseg.pipeline.pipeline",
    "load_pipeline": "geoseg.pipeline.pipeline",
    "RunResult": "geoseg.pipeline.engine",
    "Step": "geoseg.pipeline.step",
    "StepContext": "geoseg.pipeline.step",
    "available_steps": "geoseg.pipeline.registry",
    "get_step_class": "geoseg.pipeline.registry",
    "register_step": "geoseg.pipeline.registry",
}


def __getattr__(name: str) -> Any:
    """The name ``name`` of :data:`__all__`, its module imported on first use.

    Raises
    ------
    AttributeError
        ``name`` is not one of them (nor a submodule imported already).
    """
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, including those not imported yet."""
    return sorted({*globals(), *__all__})
