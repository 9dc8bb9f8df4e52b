"""Pipeline steps shipped with geoseg (thin adapters over :mod:`geoseg.road`, :mod:`geoseg.nn` and :mod:`geoseg.sequence`).

Each class is registered under its ``type_name`` in the ``geoseg.steps`` entry-point group,
so it is usable in YAML (``type: road_network``) and from Python
(``steps.RoadNetwork(simplify_m=0.5)``). Step modules are imported on first use, so a
pipeline without deep models never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "BandProbability": "masks",
    "CompareNetwork": "compare",
    "ConnectNetwork": "network",
    "GraphCut": "classify",
    "MJCRClassify": "classify",
    "NNClassify": "deep",
    "NonMaxSuppression": "centerlines",
    "OcclusionMask": "occlusion",
    "RoadNetwork": "network",
    "SegmentSequence": "sequence",
    "Skeletonize": "skeleton",
    "TensorVoting": "centerlines",
    "ThresholdMask": "masks",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"geoseg.steps.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'geoseg.steps' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The step classes too (loaded on first use), for tab completion and ``dir()``."""
    return sorted(_MODULES)
