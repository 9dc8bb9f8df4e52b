"""Classification steps: MJCR road probability and graph-cut road mask."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from geoseg.classifiers.mjcr import MJCRClassifier
from geoseg.errors import ModelFileError
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo
from geoseg.road.graphcut import graph_cut

__all__ = ["MJCRClassify", "GraphCut"]


@lru_cache(maxsize=4)
def _load_classifier(path: str, mtime: float) -> MJCRClassifier:
    return MJCRClassifier.load(path)


def load_classifier(path: str) -> MJCRClassifier:
    """Load (and cache while the file is unchanged) an MJCR model file."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file")
    return _load_classifier(str(p.resolve()), p.stat().st_mtime)


class MJCRClassify(Step):
    """Road probability by multiscale joint collaborative representation (Cheng et al. 2015)."""

    type_name = "mjcr_classify"
    takes = ("image",)
    gives = ("probability",)

    model: str = Field(description="MJCR model file from `geoseg train mjcr`")

    def halo_px(self, geo: GeoInfo) -> int:
        """Half the widest feature window plus the joint window."""
        return load_classifier(self.model).halo_px(geo.gsd_m)

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Classify every pixel (pixels without data get probability 0)."""
        classifier = load_classifier(self.model)
        return {"probability": classifier.predict_proba(layers["image"], ctx.geo.gsd_m, ctx.valid, ctx.source)}


class GraphCut(Step):
    """Homogeneous road mask: min-cut of a contrast-sensitive Potts energy (PyMaxflow)."""

    type_name = "graph_cut"
    takes = ("probability", "image")
    gives = ("mask",)

    smoothness: float = Field(1.0, ge=0, description="weight of a label change between similar neighbours (nats); higher = smoother masks")
    contrast: bool = Field(True, description="make label changes cheaper across image edges")
    bands: list[int] = Field(default_factory=lambda: [1, 2, 3], description="1-based image bands for the contrast term")

    def halo_px(self, geo: GeoInfo) -> int:
        """Graph cut is global; a halo of 32 px makes tile borders agree in practice."""
        return 32

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Cut; pixels without data are never road."""
        image = None
        if self.contrast:
            raw = layers["image"]
            idx = [b - 1 for b in self.bands if b <= raw.shape[0]] or [0]
            image = raw[idx].astype(np.float32)
            image /= np.maximum(image.reshape(len(idx), -1).std(axis=1), 1e-6)[:, None, None]
        mask = graph_cut(layers["probability"], image, smoothness=self.smoothness)
        return {"mask": mask & ctx.valid}
