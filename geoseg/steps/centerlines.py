"""Centerline steps of the paper's method: tensor voting, then non-maximum suppression."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from geoseg.pipeline.step import Step, StepContext, ceil_px
from geoseg.raster import GeoInfo
from geoseg.road.centerlines import centrality_weights, road_width_px
from geoseg.road.nms import non_max_suppression
from geoseg.road.tensor_voting import tensor_voting

__all__ = ["TensorVoting", "NonMaxSuppression"]


class TensorVoting(Step):
    """Saliency and road orientation by steerable tensor voting (Franken et al. 2006).

    Road pixels vote with a weight that grows towards the road's middle, so a wide road
    votes like its centerline; the voting scale is a multiple of the road width measured
    on the scene (or ``sigma_m``).
    """

    type_name = "tensor_voting"
    gives = ("saliency", "orientation")

    source: Literal["mask", "probability"] = Field("mask", description="layer that votes: the road mask or the road probability")
    sigma_m: float | None = Field(None, gt=0, description="voting scale in metres; default: sigma_factor x the measured road width")
    sigma_factor: float = Field(0.4, gt=0, description="voting scale as a multiple of the road width (when sigma_m is not set)")
    centrality_power: float = Field(4.0, ge=0, description="voter weight p*min(1, d/(w/2))^power, d = distance to the road edge; 0 = plain p")
    fallback_road_width_m: float = Field(7.0, gt=0, description="road width assumed when the scene has no road to measure")
    max_road_width_m: float = Field(40.0, gt=0, description="upper bound of the road width, which bounds the neighbourhood (halo)")
    n_angular: int = Field(4, ge=1, le=12, description="angular selectivity of the stick field (cos^2n)")

    def inputs(self) -> tuple[str, ...]:
        """The layer chosen by ``source``."""
        return (self.source,)

    def halo_px(self, geo: GeoInfo) -> int:
        """Votes reach three sigma."""
        sigma_m = self.sigma_m if self.sigma_m is not None else self.sigma_factor * self.max_road_width_m
        return ceil_px(3 * geo.metres_to_pixels(sigma_m))

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Vote (pixels without data do not vote)."""
        prob = np.where(ctx.valid, layers[self.source].astype(np.float32), np.float32(0))
        width = min(road_width_px(prob, ctx.px(self.fallback_road_width_m)), ctx.px(self.max_road_width_m))
        sigma = ctx.px(self.sigma_m) if self.sigma_m is not None else self.sigma_factor * width
        voters = centrality_weights(prob, width, self.centrality_power)
        result = tensor_voting(voters, sigma, n_angular=self.n_angular)
        return {"saliency": result.saliency, "orientation": result.orientation}


class NonMaxSuppression(Step):
    """Thin, smooth 1-px centerlines: saliency maxima across the road, with hysteresis."""

    type_name = "non_max_suppression"
    takes = ("saliency", "orientation")
    gives = ("centerline",)

    threshold: float = Field(0.1, gt=0, description="seed threshold, a fraction of the robust saliency maximum")
    low_threshold: float = Field(0.05, ge=0, description="continuation threshold (hysteresis), same units")

    def halo_px(self, geo: GeoInfo) -> int:
        """The ridge test looks one pixel across; hysteresis follows lines (bounded by the tile halo)."""
        return 2

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Suppress non-maxima; pixels without data are never centerline."""
        thin = non_max_suppression(layers["saliency"], layers["orientation"], threshold=self.threshold, low_threshold=self.low_threshold)
        return {"centerline": thin & ctx.valid}
