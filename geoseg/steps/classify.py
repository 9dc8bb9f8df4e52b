"""Classification steps: MJCR road probability and graph-cut road mask."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator

from geoseg.classifiers.mjcr import MJCRClassifier
from geoseg.errors import InputMismatchError
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo
from geoseg.road.graphcut import graph_cut
from geoseg.scene_checks import ValueSummary, scaled
from geoseg.steps.model_cache import load_cached
from geoseg.steps.model_input import ModelInputStep

__all__ = ["MJCRClassify", "GraphCut"]


def load_classifier(path: str) -> MJCRClassifier:
    """Load (and cache while the file is unchanged) an MJCR model file."""
    return load_cached(path, MJCRClassifier.load)


class MJCRClassify(ModelInputStep):
    """Road probability by multiscale joint collaborative representation (Cheng et al. 2015).

    Feature channels are centred on the scene's means (measured over all tiles), which
    carries a model across scenes of other brightness and colour. A scene unlike the model's
    training scenes (other data bands, another bit depth or unit) is refused with the
    ``bands`` or ``scale`` setting that fits it, before any tile is classified.
    """

    type_name = "mjcr_classify"
    takes = ("image",)
    gives = ("probability",)
    stats_inputs = ("image",)
    bytes_per_pixel = 96  # measured 76 on a 2048² tile: features are computed in strips of about 128 MB

    model: str = Field(description="MJCR model file from `geoseg train mjcr`")

    def check_files(self) -> None:
        """Load the model (kept in the cache for the scenes)."""
        load_classifier(self.model)

    def check_bands(self, band_names: tuple[str, ...], source: str) -> None:
        """The model's band checks on a one-pixel scene of these bands."""
        load_classifier(self.model).select_bands(np.zeros((len(band_names), 1, 1), np.uint8), source, band_names, bands=self.bands, label=self.label)

    def halo_px(self, geo: GeoInfo) -> int:
        """Half the widest feature window plus the joint window."""
        return load_classifier(self.model).halo_px(geo.gsd_m)

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> tuple[np.ndarray, int, ValueSummary]:
        """Sums of the feature base channels and a summary of the model's bands over the tile's core (bands checked first)."""
        classifier = load_classifier(self.model)
        image = layers["image"]
        valid = ctx.raster_valid(self.label)
        selected = classifier.select_bands(image, ctx.source, ctx.band_names, bands=self.bands, label=self.label, valid=valid)
        sums, count = classifier.channel_sums(scaled(selected, self.scale), ctx.geo.gsd_m, valid, ctx.core)
        rows, cols = ctx.core
        return sums, count, ValueSummary.of(selected[:, rows, cols], valid[rows, cols], ctx.source, image.shape[0], levels=False)

    def fit(self, partials: list[Any]) -> Step:
        """The scene's channel means, once its values are found in the range of the model's training scenes."""
        load_classifier(self.model).check_values(ValueSummary.merge([p[2] for p in partials]), scale=self.scale, label=self.label)
        count = sum(p[1] for p in partials)
        sums = np.sum([p[0] for p in partials], axis=0)
        return self.with_fitted(channel_means=(sums / max(count, 1)).astype(np.float32))

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Classify every pixel (pixels without data get probability 0)."""
        classifier = load_classifier(self.model)
        prob = classifier.predict_proba(
            layers["image"], ctx.geo.gsd_m, ctx.valid, ctx.source, self.fitted("channel_means"), ctx.band_names,
            bands=self.bands, scale=self.scale, label=self.label,
        )  # fmt: skip
        return {"probability": prob}


class GraphCut(Step):
    """Homogeneous road mask: min-cut of a contrast-sensitive Potts energy (PyMaxflow).

    The contrast term uses the image bands scaled by their scene standard deviations and
    the Boykov-Jolly beta measured over the whole scene. ``smoothness: 0`` is a threshold at
    p = 0.5: no statistics pass, no halo, no max-flow.
    """

    type_name = "graph_cut"
    takes = ("probability", "image")
    gives = ("mask",)
    stats_inputs = ("image",)
    bytes_per_pixel = 120

    smoothness: float = Field(1.0, ge=0, description="weight of a label change between similar neighbours (nats); higher = smoother masks")
    contrast: bool = Field(True, description="make label changes cheaper across image edges")
    bands: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1, description="1-based image bands for the contrast term")

    @field_validator("bands")
    @classmethod
    def _one_based(cls, bands: list[int]) -> list[int]:
        if min(bands) < 1:
            raise ValueError("band numbers start at 1")
        return bands

    def halo_px(self, geo: GeoInfo) -> int:
        """Graph cut is global; a halo of 32 px makes tile borders agree in practice (none for a threshold)."""
        return 32 if self.smoothness > 0 else 0

    def statistics_inputs(self) -> tuple[str, ...]:
        """The image, for the contrast term; nothing when there is no pairwise term to weight."""
        return self.stats_inputs if self._contrast_used() else ()

    def _contrast_used(self) -> bool:
        return self.contrast and self.smoothness > 0

    def check_bands(self, band_names: tuple[str, ...], source: str) -> None:
        """Refuse bands given explicitly (``graph_cut.bands``) that the scene lacks; the default [1, 2, 3] takes what the scene has."""
        self._refuse_missing_bands(len(band_names), source)

    def _refuse_missing_bands(self, count: int, source: str) -> None:
        missing = [b for b in self.bands if b > count] if "bands" in self.model_fields_set else []
        if missing:
            raise InputMismatchError(f"{source}: {self.label}.bands {self.bands}: band(s) {missing} do not exist (the scene has {count})")

    def _bands(self, image: np.ndarray, ctx: StepContext) -> np.ndarray:
        self._refuse_missing_bands(image.shape[0], ctx.source)
        idx = [b - 1 for b in self.bands if b <= image.shape[0]] or [0]
        return image[idx].astype(np.float64)

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> tuple[np.ndarray, ...]:
        """Per band: sum, sum of squares and count over the core; squared neighbour differences.

        The differences are summed over the pairs ``(p, p + offset)`` of the 8-neighbourhood's
        four offsets whose first pixel ``p`` is in the core and both pixels have data.
        """
        bands = self._bands(layers["image"], ctx)
        valid = ctx.raster_valid(self.label)
        (r0, r1, _), (c0, c1, _) = (sl.indices(n) for sl, n in zip(ctx.core, bands.shape[1:]))
        keep = valid[r0:r1, c0:c1]
        core = bands[:, r0:r1, c0:c1][:, keep]
        diff_sum = np.zeros(bands.shape[0])
        pairs = 0
        height, width = bands.shape[1:]
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            rows = slice(r0, min(r1, height - dr))
            cols = slice(max(c0, -dc), min(c1, width - dc))
            moved = (slice(rows.start + dr, rows.stop + dr), slice(cols.start + dc, cols.stop + dc))
            ok = valid[rows, cols] & valid[moved]
            d = bands[:, rows, cols] - bands[:, moved[0], moved[1]]
            if not ok.all():
                d *= ok
            diff_sum += np.einsum("bij,bij->b", d, d)
            pairs += int(np.count_nonzero(ok))
        return core.sum(axis=1), (core * core).sum(axis=1), np.array(core.shape[1]), diff_sum, np.array(pairs)

    def fit(self, partials: list[Any]) -> Step:
        """Band standard deviations and beta = 1 / (2 <||I_p - I_q||^2>) of the scaled bands."""
        s1, s2, n, d2, pairs = (np.sum([p[i] for p in partials], axis=0) for i in range(5))
        n, pairs = max(int(n), 1), max(int(pairs), 1)
        std = np.maximum(np.sqrt(np.maximum(s2 / n - (s1 / n) ** 2, 0.0)), 1e-6)
        mean_d2 = float(np.sum(d2 / pairs / std**2))
        return self.with_fitted(std=std, beta=1.0 / (2.0 * mean_d2) if mean_d2 > 0 else 0.0)

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Cut; pixels without data are never road."""
        image = None
        if self._contrast_used():
            image = self._bands(layers["image"], ctx) / self.fitted("std")[:, None, None]
        mask = graph_cut(layers["probability"], image, smoothness=self.smoothness, contrast_beta=self.fitted("beta") if image is not None else None)
        return {"mask": mask & ctx.valid}
