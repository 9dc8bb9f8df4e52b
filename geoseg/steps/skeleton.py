"""The baseline centerline step: morphological thinning of the road mask."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from geoseg.pipeline.step import Step, StepContext
from geoseg.road.skeleton import skeletonize_mask

__all__ = ["Skeletonize"]


class Skeletonize(Step):
    """Baseline centerlines: thin the road mask to 1 px (spurs and split junctions remain)."""

    type_name = "skeletonize"
    takes = ("mask",)
    gives = ("centerline",)

    smooth_m: float = Field(0.3, ge=0, description="bumps and notches narrower than about twice this are smoothed away first")
    max_hole_m2: float = Field(6.0, ge=0, description="holes in the mask up to this area (m^2) are filled first")

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Thin the mask (:func:`geoseg.road.skeleton.skeletonize_mask`)."""
        radius = int(round(ctx.px(self.smooth_m)))
        area = int(math.floor(self.max_hole_m2 / (ctx.geo.gsd_m**2)))
        return {"centerline": skeletonize_mask(layers["mask"], max_hole_area=area, smooth_radius=radius)}
