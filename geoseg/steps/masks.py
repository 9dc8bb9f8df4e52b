"""Steps that turn a band of the input into a road mask or a road probability."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from geoseg.errors import InputMismatchError
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo
from geoseg.scene_checks import ValueSummary, check_mask, check_mask_bands

__all__ = ["ThresholdMask", "BandProbability", "TYPICAL_ROAD_WIDTH_M"]

#: Mean road width (metres) a dry run assumes to foresee the block size of a mask chain.
TYPICAL_ROAD_WIDTH_M = 7.0
#: Widest road (metres) that the block size is chosen for: a band all above the threshold (an
#: image thresholded with check_input=false) would otherwise make blocks of the scene's size.
MAX_ROAD_WIDTH_M = 40.0


def _band(image: np.ndarray, band: int, ctx: StepContext) -> np.ndarray:
    if not 1 <= band <= image.shape[0]:
        raise InputMismatchError(f"{ctx.source}: band {band} does not exist (the scene has {image.shape[0]} band(s))")
    return image[band - 1]


@dataclass(frozen=True)
class RoadShape:
    """Road pixels of a tile's core and the pixel sides between road and background there."""

    area: int
    boundary: int

    @classmethod
    def of(cls, road: np.ndarray) -> RoadShape:
        """Count the road pixels and the road/background pixel sides of a boolean array."""
        sides = np.count_nonzero(road[1:] != road[:-1]) + np.count_nonzero(road[:, 1:] != road[:, :-1])
        return cls(int(np.count_nonzero(road)), int(sides))

    @classmethod
    def merge(cls, parts: list[RoadShape]) -> RoadShape:
        """The counts of several tiles added up."""
        return cls(sum(p.area for p in parts), sum(p.boundary for p in parts))

    def mean_width_px(self) -> float | None:
        """Mean road width ``2·area / perimeter`` (None without road).

        The perimeter is the number of pixel sides on the boundary times ``π/4`` (Cauchy-Crofton:
        a straight edge at a random angle crosses ``4/π`` times its length in pixel sides), so
        the estimate is exact on average over directions; a road along the pixel axes reads
        27 % wider, a diagonal one 10 % narrower.
        """
        return 2.0 * self.area / (self.boundary * math.pi / 4) if self.boundary else None


class ThresholdMask(Step):
    """Road mask from one band: road where value > threshold (a 0/1 or 0/255 mask as is).

    Unless ``check_input`` is false, the scene must look like a road mask: one data band (or
    the chosen ``band``) holding 0 and one other value, or a probability in [0, 1]. Anything
    else (an image given by mistake, a class map) is refused before any tile is processed:
    the band count on the first tile, the values from scene-wide statistics.

    With ``work_road_px``, the same statistics measure the mean road width (from the road
    area and boundary), and the rest of the chain works on blocks of the scene's pixels sized
    so that this width is at least ``work_road_px`` blocks (:mod:`geoseg.pipeline.coarsen`):
    the mask is then the road share of each block.
    """

    type_name = "threshold_mask"
    takes = ("image",)
    gives = ("mask",)

    band: int | None = Field(None, ge=1, description="1-based band index; default: the scene's only data band (a scene with more is refused)")
    threshold: float = Field(0.0, description="road where value > threshold; 0 suits 0/1 and 0/255 masks, use 0.5 or 127 for probabilities")
    check_input: bool = Field(
        True,
        description="refuse a scene that does not look like a road mask (one band; 0 and one other value, or a probability in [0, 1]); "
        "false thresholds the band as it is",
    )
    work_road_px: float | None = Field(
        None,
        gt=0,
        description="work on pixel blocks so that the mean road width is at least this many blocks (the mask becomes each block's road share); "
        "null works at the scene's own resolution",
    )

    def statistics_inputs(self) -> tuple[str, ...]:
        """The image, whose values are checked and road width measured (none without ``check_input`` and ``work_road_px``)."""
        return ("image",) if self.check_input or self.work_road_px is not None else ()

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> tuple[ValueSummary, RoadShape, float]:
        """The band's values, road shape and :data:`MAX_ROAD_WIDTH_M` in pixels over the tile's core; a scene of several data bands is refused here."""
        image = layers["image"]
        tile_valid = ctx.raster_valid(self.label)
        if self.band is None and self.check_input:
            check_mask_bands(image, tile_valid, ctx.band_names, ctx.source, self.label)
        rows, cols = ctx.core
        values = _band(image, self.band or 1, ctx)[None, rows, cols]
        valid = tile_valid[rows, cols]
        shape = RoadShape.of((values[0] > self.threshold) & valid) if self.work_road_px is not None else RoadShape(0, 0)
        return ValueSummary.of(values, valid, ctx.source, image.shape[0]), shape, ctx.px(MAX_ROAD_WIDTH_M)

    def fit(self, partials: list[Any]) -> Step:
        """Refuse the scene unless its values look like a road mask; choose the block size."""
        summary = ValueSummary.merge([p[0] for p in partials]) if partials else None
        if self.check_input and summary is not None:
            check_mask(summary, self.label)
        width = RoadShape.merge([p[1] for p in partials]).mean_width_px()
        widest = min((p[2] for p in partials), default=math.inf)  # a "mask" all road (an image thresholded anyway) has no width
        factor = 1 if self.work_road_px is None or width is None else max(1, math.floor(min(width, widest) / self.work_road_px))
        return self.with_fitted(values=summary, road_width_px=width, coarsening=factor)

    def wants_coarsening(self) -> bool:
        """With ``work_road_px``."""
        return self.work_road_px is not None

    def coarsening(self) -> int:
        """Blocks of ``floor(mean road width / work_road_px)`` pixels (1 without road or ``work_road_px``)."""
        return int(self.fitted("coarsening")) if self._fitted is not None else 1

    def expected_coarsening(self, geo: GeoInfo) -> int:
        """The block size for roads of :data:`TYPICAL_ROAD_WIDTH_M` (what a dry run shows; the run measures the width)."""
        if self.work_road_px is None:
            return 1
        return max(1, math.floor(geo.metres_to_pixels(TYPICAL_ROAD_WIDTH_M) / self.work_road_px))

    def coarsening_reason(self) -> str:
        """The measured width and the asked one."""
        width = self.fitted("road_width_px")
        return f"mean road width {width:.1f} px, work_road_px {self.work_road_px:g}" if width is not None else "no road"

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Threshold the band; pixels without data are never road.

        On blocks of the scene (``ctx.coarsening > 1``) the image holds the block means of
        :meth:`block_values`: the mask is the road share of each block (float32 in [0, 1]).
        """
        valid = ctx.raster_valid(self.label)
        if ctx.coarsening > 1:
            return {"mask": np.where(valid, layers["image"][0], np.float32(0)).astype(np.float32)}
        return {"mask": (_band(layers["image"], self.band or 1, ctx) > self.threshold) & valid}

    def block_values(self, image: np.ndarray) -> np.ndarray:
        """The road indicator (band > threshold, 0 or 1), whose block means are the road share."""
        return (image[(self.band or 1) - 1] > self.threshold)[None]


class BandProbability(Step):
    """Road probability in [0, 1] from one band of a soft road map (e.g. a model's output)."""

    type_name = "band_probability"
    takes = ("image",)
    gives = ("probability",)

    band: int = Field(1, ge=1, description="1-based band index")
    scale: float | None = Field(None, gt=0, description="value that means probability 1; default: the integer type's maximum, 1 for floats")

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Scale the band to [0, 1]; pixels without data get 0."""
        values = _band(layers["image"], self.band, ctx)
        scale = self.scale
        if scale is None:
            scale = float(np.iinfo(values.dtype).max) if np.issubdtype(values.dtype, np.integer) else 1.0
        prob = np.clip(np.nan_to_num(values.astype(np.float32) / np.float32(scale)), 0.0, 1.0)
        prob[~ctx.raster_valid(self.label)] = 0.0
        return {"probability": prob}
