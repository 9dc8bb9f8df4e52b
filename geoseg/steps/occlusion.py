"""Where roads may be hidden from above: tree crowns and shadows, from the image's colours (``occlusion_mask``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo

__all__ = ["OcclusionMask"]


class OcclusionMask(Step):
    """Where roads may be hidden from above: tree crowns and shadows, from the image's colours.

    Tree crowns: *dark* vegetation, excess green ``(2G - R - B) / (R + G + B)`` above
    ``vegetation_index`` (Woebbecke et al. 1995, chromatic coordinates), or NDVI above ``ndvi``
    when the scene has a band named ``nir``, where the brightness (mean of bands 1-3) is below
    ``crown_fraction`` times the scene's median brightness: lit lawns and crops are brighter than
    crowns, which shade themselves. Shadows: brightness below ``shadow_fraction`` times the
    median. The median is measured over all tiles. Patches thinner than ``min_size_m`` (crop
    rows, dark cars) are removed by a morphological opening. Needs bands 1-3 to be red, green
    and blue (with fewer bands: shadows only). A colour rule, not a classifier: it tells
    crowns and shadows from lit ground in typical summer imagery, not in every scene.
    """

    type_name = "occlusion_mask"
    takes = ("image",)
    gives = ("occlusion",)
    stats_inputs = ("image",)
    bytes_per_pixel = 24

    vegetation_index: float = Field(0.1, description="excess green above which a pixel is vegetation")
    ndvi: float = Field(0.3, description="NDVI above which a pixel is vegetation (scenes with a band named nir)")
    crown_fraction: float = Field(0.8, gt=0, le=1, description="vegetation darker than this share of the scene median is tree crown")
    shadow_fraction: float = Field(0.5, gt=0, lt=1, description="brightness below this share of the scene median is shadow")
    min_size_m: float = Field(1.0, ge=0, description="radius (metres) of the opening that removes thinner patches")

    def halo_px(self, geo: GeoInfo) -> int:
        """An opening (erosion, then dilation) looks twice its radius away."""
        return 2 * int(round(geo.metres_to_pixels(self.min_size_m))) + 1

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> np.ndarray:
        """Histogram of log2 brightness over the tile's core (40 bins per octave, 2^-20 to 2^20)."""
        rows, cols = ctx.core
        bright = _brightness(layers["image"])[rows, cols]
        valid = ctx.raster_valid(self.label)[rows, cols] & (bright > 0)
        return np.histogram(np.log2(bright[valid]), bins=_LOG_BINS)[0]

    def fit(self, partials: list[Any]) -> Step:
        """The scene's median brightness."""
        counts = np.sum(partials, axis=0) if partials else np.zeros(len(_LOG_BINS) - 1)
        if counts.sum() == 0:
            return self.with_fitted(median=math.nan)
        k = int(np.searchsorted(np.cumsum(counts), counts.sum() / 2))
        return self.with_fitted(median=float(2 ** ((_LOG_BINS[k] + _LOG_BINS[k + 1]) / 2)))

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """The occlusion mask of the tile (False where the scene has no data)."""
        from scipy import ndimage as ndi

        image = layers["image"]
        valid = ctx.raster_valid(self.label)
        median = self.fitted("median")
        if not math.isfinite(median):
            return {"occlusion": np.zeros(valid.shape, bool)}
        bright = _brightness(image)
        names = [n.lower() for n in ctx.band_names]
        with np.errstate(invalid="ignore", divide="ignore"):
            if "nir" in names and image.shape[0] >= 3:
                nir, red = image[names.index("nir")].astype(np.float32), image[0].astype(np.float32)
                green = (nir - red) / (nir + red) > self.ndvi
            elif image.shape[0] >= 3:
                r, g, b = (image[i].astype(np.float32) for i in range(3))
                green = (2 * g - r - b) / (r + g + b) > self.vegetation_index
            else:
                green = np.zeros(valid.shape, bool)
        hidden = (green & (bright < self.crown_fraction * median)) | (bright < self.shadow_fraction * median)
        radius = int(round(ctx.px(self.min_size_m)))
        if radius > 0:
            yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
            hidden = ndi.binary_opening(hidden, structure=xx**2 + yy**2 <= radius**2)
        return {"occlusion": hidden & valid}


def _brightness(image: np.ndarray) -> np.ndarray:
    """Mean of bands 1-3 (or of all bands, with fewer)."""
    return image[: min(3, image.shape[0])].astype(np.float32).mean(axis=0)


#: Bin edges of the log2-brightness histogram of :class:`OcclusionMask`.
_LOG_BINS = np.linspace(-20.0, 20.0, 1601)
