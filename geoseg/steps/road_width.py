"""Scene-wide road width for the steps whose scales follow it (tensor voting, connection)."""

from __future__ import annotations

from typing import Any

import numpy as np

from geoseg.pipeline.step import StepContext, ceil_px
from geoseg.raster import GeoInfo
from geoseg.road.centerlines import width_histogram

__all__ = ["WIDTH_STATS_BYTES_PER_PIXEL", "width_partial", "width_stats_halo_px"]

#: Peak memory per pixel of :func:`width_partial`: the float64 distance transform, its
#: int32 feature indices (two), the float32 masked copy and the boolean mask and skeleton.
WIDTH_STATS_BYTES_PER_PIXEL = 32


def width_partial(layers: dict[str, Any], ctx: StepContext) -> np.ndarray:
    """Road-width histogram of a tile's core, from its mask (or probability > 0.5).

    Computed once per layer and core of a tile: the steps measuring it in one pass share it
    (``ctx.shared``).

    Parameters
    ----------
    layers : dict
        The tile's layers; ``mask`` is used, else ``probability``.
    ctx : StepContext
        The tile's context (its core, valid-data mask and shared results).

    Returns
    -------
    numpy.ndarray
        The histogram (:func:`~geoseg.road.centerlines.width_histogram`) of the road widths
        measured in the core; a single 0 count when the tile has neither layer.
    """
    road = layers.get("mask", layers.get("probability"))
    if road is None:
        return np.zeros(1, dtype=np.int64)
    key = ("width_histogram", id(road), *((c.start, c.stop, c.step) for c in ctx.core))
    if key not in ctx.shared:
        valid = ctx.valid if ctx.valid is not None else True
        ctx.shared[key] = width_histogram(np.where(valid, road, 0), ctx.core)
    return ctx.shared[key]


def width_stats_halo_px(geo: GeoInfo, max_road_width_m: float) -> int:
    """Context (pixels) :func:`width_partial` needs around a tile's core: half the widest road, plus 2 px.

    A width sample is the distance to the road edge at a centerline pixel, at most half the
    road's width away; the centerline there is found from as far.

    Parameters
    ----------
    geo : GeoInfo
        The scene's georeferencing (its GSD is used).
    max_road_width_m : float
        The widest road measured, in metres.

    Returns
    -------
    int
        The halo in pixels.

    Examples
    --------
    >>> from affine import Affine
    >>> geo = GeoInfo(100, 100, None, Affine.identity(), (0.5, 0.5), False)
    >>> width_stats_halo_px(geo, 40.0)  # 40 m is 80 px: 40 px, plus 2
    42
    """
    return ceil_px(geo.metres_to_pixels(max_road_width_m) / 2) + 2
