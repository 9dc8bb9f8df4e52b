"""Centerline steps of the paper's method: tensor voting, then non-maximum suppression."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from geoseg.pipeline.step import Step, StepContext, ceil_px
from geoseg.raster import GeoInfo
from geoseg.road.centerlines import centrality_weights, width_from_histogram
from geoseg.road.nms import coverage_offsets, non_max_suppression, ridge_mask
from geoseg.road.tensor_voting import tensor_voting
from geoseg.steps.road_width import WIDTH_STATS_BYTES_PER_PIXEL, width_partial, width_stats_halo_px

__all__ = ["TensorVoting", "NonMaxSuppression"]


class TensorVoting(Step):
    """Saliency and road orientation by steerable tensor voting (Franken et al. 2006).

    Road pixels vote with a weight that grows towards the road's middle, so a wide road
    votes like its centerline; the voting scale is a multiple of the road width measured
    on the whole scene (or ``sigma_m``).
    """

    type_name = "tensor_voting"
    gives = ("saliency", "orientation")
    bytes_per_pixel = 480  # a bound: voting peaks at 240-340 B/px on 658² tiles (fewer with halo sides), the float64 weights add ~50
    stats_bytes_per_pixel = WIDTH_STATS_BYTES_PER_PIXEL

    source: Literal["mask", "probability"] = Field("mask", description="layer that votes: the road mask or the road probability")
    sigma_m: float | None = Field(None, gt=0, description="voting scale in metres; default: sigma_factor x the measured road width")
    sigma_factor: float = Field(0.4, gt=0, description="voting scale as a multiple of the road width (when sigma_m is not set)")
    centrality_power: float = Field(4.0, ge=0, description="voter weight p*min(1, d/h)^power, d = distance to the road edge, h = local half-width; 0 = plain p")
    fallback_road_width_m: float = Field(7.0, gt=0, description="road width assumed when the scene has no road to measure")
    max_road_width_m: float = Field(40.0, gt=0, description="upper bound of the measured road width")
    n_angular: int = Field(4, ge=1, le=12, description="angular selectivity of the stick field (cos^2n)")

    def inputs(self) -> tuple[str, ...]:
        """The layer chosen by ``source``."""
        return (self.source,)

    def statistics_inputs(self) -> tuple[str, ...]:
        """The voting layer: its road width sets the scales."""
        return (self.source,)

    def stats_halo_px(self, geo: GeoInfo) -> int:
        """Measuring a width sees half the widest road around each pixel (:func:`width_stats_halo_px`)."""
        return width_stats_halo_px(geo, self.max_road_width_m)

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> np.ndarray:
        """Road-width histogram of the tile's core."""
        return width_partial({"mask": layers[self.source]}, ctx)

    def fit(self, partials: list[Any]) -> Step:
        """Fix the road width (pixels) measured over the scene."""
        return self.with_fitted(histograms=partials)

    def _width_px(self, geo: GeoInfo) -> float:
        return width_from_histogram(self.fitted("histograms"), geo.metres_to_pixels(self.fallback_road_width_m), geo.metres_to_pixels(self.max_road_width_m))

    def _sigma_px(self, geo: GeoInfo) -> float:
        return geo.metres_to_pixels(self.sigma_m) if self.sigma_m is not None else self.sigma_factor * self._width_px(geo)

    def halo_px(self, geo: GeoInfo) -> int:
        """Votes reach three sigma; a voter's weight looks a road width further (distance to the edge)."""
        return ceil_px(3 * self._sigma_px(geo) + self._width_px(geo))

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Vote (pixels without data do not vote)."""
        prob = np.where(ctx.raster_valid(self.label), layers[self.source].astype(np.float32), np.float32(0))
        voters = centrality_weights(prob, self._width_px(ctx.geo), self.centrality_power)
        result = tensor_voting(voters, self._sigma_px(ctx.geo), n_angular=self.n_angular, workers=ctx.threads, context_px=ctx.halo_sides(voters.shape))
        return {"saliency": result.saliency, "orientation": result.orientation}


#: How far (metres) tiled runs follow a weak centerline to the seed that keeps it (hysteresis);
#: an untiled run follows it any distance. Weak stretches longer than this are gaps in practice.
HYSTERESIS_REACH_M = 10.0


class NonMaxSuppression(Step):
    """Thin, smooth 1-px centerlines: saliency maxima across the road, with hysteresis.

    Thresholds are fractions of a robust maximum of the saliency over the whole scene. Also
    gives ``confidence``: the saliency as that fraction, clipped to [0, 1] (the network's edges
    carry its mean; the seed threshold is 0.1 and the continuation threshold 0.05 on this scale),
    and, when the chain has a road mask or probability, ``centerline_offset``: each centerline
    pixel's shift to the middle of the road's coverage across it (sub-pixel placement, which
    keeps coarse working resolutions accurate; see :func:`~geoseg.road.nms.coverage_offsets`).
    """

    type_name = "non_max_suppression"
    takes = ("saliency", "orientation")
    gives = ("centerline", "confidence", "centerline_offset")
    stats_inputs = ("saliency", "orientation")
    uses_if_present = ("mask", "probability")
    bytes_per_pixel = 160  # float64 interpolation temporaries

    threshold: float = Field(0.1, gt=0, description="seed threshold, a fraction of the robust saliency maximum")
    low_threshold: float = Field(0.05, ge=0, description="continuation threshold (hysteresis), same units")
    offset_reach_m: float = Field(
        5.0,
        ge=0,
        description="with a road mask or probability: how far across the road (m) its middle is sought to place each centerline pixel; 0 = pixel centres",
    )

    def halo_px(self, geo: GeoInfo) -> int:
        """The ridge test looks one pixel across; hysteresis follows weak lines up to ``HYSTERESIS_REACH_M``, offsets look ``offset_reach_m`` across."""
        return 2 + ceil_px(geo.metres_to_pixels(max(HYSTERESIS_REACH_M, self.offset_reach_m)))

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> np.ndarray:
        """Saliency of the ridge pixels of the tile's core."""
        sal = layers["saliency"]
        ridge = ridge_mask(sal, layers["orientation"])
        return sal[ctx.core][ridge[ctx.core] & (sal[ctx.core] > 0)].astype(np.float32)

    def fit(self, partials: list[Any]) -> Step:
        """The reference saliency: 99th percentile over ridge pixels above 1 % of the maximum."""
        values = np.concatenate([p.ravel() for p in partials]) if partials else np.zeros(0, np.float32)
        peak = float(values.max(initial=0.0))
        significant = values[values >= 0.01 * peak]
        return self.with_fitted(scale=float(np.percentile(significant, 99)) if significant.size else 0.0)

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Suppress non-maxima; pixels without data are never centerline."""
        scale = self.fitted("scale")
        saliency = layers["saliency"]
        if scale <= 0:
            return {
                "centerline": np.zeros(saliency.shape, dtype=bool),
                "confidence": np.zeros(saliency.shape, dtype=np.float32),
                "centerline_offset": np.zeros((2, *saliency.shape), np.float32),
            }
        thin = non_max_suppression(saliency, layers["orientation"], threshold=self.threshold * scale, low_threshold=self.low_threshold * scale, relative=False)
        confidence = np.clip(saliency / np.float32(scale), 0.0, 1.0).astype(np.float32)
        line = thin & ctx.valid
        out = {"centerline": line, "confidence": confidence}
        coverage = layers.get("mask", layers.get("probability"))
        if coverage is not None and self.offset_reach_m > 0:
            out["centerline_offset"] = coverage_offsets(coverage, layers["orientation"], line, ctx.px(self.offset_reach_m))
        else:
            out["centerline_offset"] = np.zeros((2, *line.shape), np.float32)
        return out
