"""Steps that turn a band of the input into a road mask or a road probability."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from geoseg.errors import InputMismatchError
from geoseg.pipeline.step import Step, StepContext
from geoseg.scene_checks import ValueSummary, check_mask, check_mask_bands

__all__ = ["ThresholdMask", "BandProbability"]


def _band(image: np.ndarray, band: int, ctx: StepContext) -> np.ndarray:
    if not 1 <= band <= image.shape[0]:
        raise InputMismatchError(f"{ctx.source}: band {band} does not exist (the scene has {image.shape[0]} band(s))")
    return image[band - 1]


class ThresholdMask(Step):
    """Road mask from one band: road where value > threshold (a 0/1 or 0/255 mask as is).

    Unless ``check_input`` is false, the scene must look like a road mask: one data band (or
    the chosen ``band``) holding 0 and one other value, or a probability in [0, 1]. Anything
    else (an image given by mistake, a class map) is refused before any tile is processed:
    the band count on the first tile, the values from scene-wide statistics.
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

    def statistics_inputs(self) -> tuple[str, ...]:
        """The image, whose values are checked (none without ``check_input``)."""
        return ("image",) if self.check_input else ()

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> ValueSummary:
        """The thresholded band's values over the tile's core; a scene of several data bands is refused here."""
        image = layers["image"]
        if self.band is None:
            check_mask_bands(image, ctx.valid, ctx.band_names, ctx.source, self.label)
        rows, cols = ctx.core
        values = _band(image, self.band or 1, ctx)[None, rows, cols]
        return ValueSummary.of(values, ctx.valid[rows, cols], ctx.source, image.shape[0])

    def fit(self, partials: list[Any]) -> ThresholdMask:
        """Refuse the scene unless its values look like a road mask."""
        summary = ValueSummary.merge(partials)
        check_mask(summary, self.label)
        return self.with_fitted(values=summary)

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Threshold the band; pixels without data are never road."""
        values = _band(layers["image"], self.band or 1, ctx)
        return {"mask": (values > self.threshold) & ctx.valid}


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
        prob[~ctx.valid] = 0.0
        return {"probability": prob}
