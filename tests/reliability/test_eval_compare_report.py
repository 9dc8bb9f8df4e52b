"""Evaluation, map comparison and reports as a user meets them: no data, empty networks, copies, options.

Each test reproduces a defect found by touring ``geoseg eval``, ``compare`` and ``report``
(docs/RELIABILITY.md) and fails on the code before its fix.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize

from geoseg.evaluate import evaluate_files
from tests.conftest import SAMPLE_DATA


def _centerline_rasters(tmp_path: Path) -> tuple[Path, Path]:
    """Scene A's truth burnt into two 1-px centerline rasters; the second has no data east of column 300."""
    with rasterio.open(SAMPLE_DATA / "scene_a_mask.tif") as src:
        profile, shape, transform = src.profile, src.shape, src.transform
    lines = rasterize(gpd.read_file(SAMPLE_DATA / "scene_a_centerlines.geojson").geometry, out_shape=shape, transform=transform).astype(np.uint8)
    profile.update(driver="GTiff", dtype="uint8", count=1, nodata=None)
    pred, truth = tmp_path / "pred.tif", tmp_path / "truth.tif"
    with rasterio.open(pred, "w", **profile) as dst:
        dst.write(lines, 1)
    lines[:, 300:] = 255
    profile.update(nodata=255)
    with rasterio.open(truth, "w", **profile) as dst:
        dst.write(lines, 1)
    return pred, truth


@pytest.mark.parametrize("buffer_m", [None, 1.0])  # pixel matching on one grid, line matching in metres
def test_pixels_without_data_in_one_raster_are_scored_in_neither(tmp_path: Path, buffer_m: float | None) -> None:
    pred, truth = _centerline_rasters(tmp_path)
    whole = evaluate_files(pred, pred).truth_length_m
    for a, b in ((pred, truth), (truth, pred)):
        result = evaluate_files(a, b, buffer_m=buffer_m)
        assert (result.completeness, result.correctness) == (pytest.approx(1.0), pytest.approx(1.0)), (a.name, result.mode)
        assert result.pred_length_m == pytest.approx(result.truth_length_m, rel=0.02)
        assert 0.3 * whole < result.truth_length_m < 0.9 * whole  # the western part only
