"""What raster steps need from their context beyond what network steps get."""

from __future__ import annotations

import numpy as np

from geoseg.errors import GeosegError
from geoseg.pipeline.step import Step, StepContext

__all__ = ["raster_valid"]


def raster_valid(ctx: StepContext, step: Step) -> np.ndarray:
    """The tile's valid-data mask (``ctx.valid``), which the engine gives every raster step.

    Raises
    ------
    GeosegError
        The context has no valid-data mask (a network step's context).
    """
    if ctx.valid is None:
        raise GeosegError(f"step {step.label} runs on raster tiles: its context needs the valid-data mask")
    return ctx.valid
