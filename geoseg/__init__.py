"""geoseg: road centerline networks from very-high-resolution scenes, in declarative pipelines.

>>> import geoseg
>>> pipe = geoseg.load_pipeline("pipelines/mask_to_centerlines.yaml")   # doctest: +SKIP
>>> result = pipe.run("sample_data/scene_a_mask.tif")                   # doctest: +SKIP
>>> result.lines.head()                                                 # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Pipeline",
    "load_pipeline",
    "run",
    "RunResult",
    "read_raster",
    "steps",
    "errors",
]


def __getattr__(name: str) -> Any:
    # Lazy imports keep `geoseg --help` fast and let `import geoseg` stay light.
    if name in ("Pipeline", "load_pipeline"):
        return getattr(importlib.import_module("geoseg.pipeline.pipeline"), name)
    if name == "RunResult":
        return importlib.import_module("geoseg.pipeline.engine").RunResult
    if name == "read_raster":
        return importlib.import_module("geoseg.raster").read_raster
    if name in ("steps", "errors"):
        return importlib.import_module(f"geoseg.{name}")
    raise AttributeError(f"module 'geoseg' has no attribute {name!r}")


def run(pipeline: str | os.PathLike[str] | Any, scene: Any, overrides: Mapping[str, Any] | Sequence[str] | str | None = None) -> Any:
    """Run a pipeline (a YAML path or a :class:`Pipeline`) on one scene and return its result.

    Parameters
    ----------
    pipeline : path or Pipeline
        The pipeline.
    scene : path or Raster
        The scene.
    overrides : mapping, sequence of str or str, optional
        ``--set``-style overrides, e.g. ``{"model": "roads.mjcr.npz"}`` or
        ``["model=roads.mjcr.npz"]`` (one ``NAME=VALUE`` text alone too).
    """
    from geoseg.pipeline.pipeline import Pipeline, load_pipeline

    pipe = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    if overrides:
        pipe = pipe.with_overrides(overrides)
    return pipe.run(scene)
