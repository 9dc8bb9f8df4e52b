"""Tests of the synthetic scene renderer and the sample-data writer."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from scipy import ndimage

from geoseg.errors import ConfigError
from geoseg.synthetic import SyntheticScene, render_scene

SAMPLE_SCRIPT = Path(__file__).resolve().parents[1] / "sample_data" / "make_sample_data.py"


@pytest.fixture(scope="module")
def crossing() -> SyntheticScene:
    """A small scene with one X-crossing and two branch roads."""
    return render_scene(192, 192, gsd_m=0.3, seed=4, n_through=(1, 1), n_branches=2)


def _junctions(scene: SyntheticScene) -> tuple[int, int]:
    """Count X-crossings (interior to both lines) and T-junctions (end of one on another)."""
    n_x = n_t = 0
    for a, b in itertools.combinations(scene.centerlines, 2):
        for point in shapely.get_parts(a.intersection(b)):
            if not isinstance(point, shapely.Point):
                continue
            at_end = [min(point.distance(shapely.Point(line.coords[i])) for i in (0, -1)) < 1e-6
                      for line in (a, b)]
            n_x += not any(at_end)
            n_t += sum(at_end) == 1
    return n_x, n_t


def test_deterministic_for_a_seed() -> None:
    one = render_scene(96, 128, seed=7)
    two = render_scene(96, 128, seed=7)
    other = render_scene(96, 128, seed=8)
    assert one.image.shape == (3, 96, 128) and one.image.dtype == np.uint8
    np.testing.assert_array_equal(one.image, two.image)
    np.testing.assert_array_equal(one.road_mask, two.road_mask)
    assert [line.wkb for line in one.centerlines] == [line.wkb for line in two.centerlines]
    assert not np.array_equal(one.image, other.image)


def test_mask_is_buffer_of_centerlines(crossing: SyntheticScene) -> None:
    half_px = crossing.road_width_m / 2.0 / crossing.gsd_m
    assert 4.0 <= crossing.road_width_m.min() and crossing.road_width_m.max() <= 14.0
    rows, cols = np.mgrid[0:192, 0:192]
    points = shapely.points(cols.ravel() + 0.5, rows.ravel() + 0.5)
    edge = np.min([shapely.distance(points, line) - h
                   for line, h in zip(crossing.centerlines, half_px)], axis=0).reshape(192, 192)
    # away from the frame the mask is exactly the buffer sampled at pixel centres
    inner = np.zeros((192, 192), dtype=bool)
    margin = int(np.ceil(half_px.max())) + 1
    inner[margin:-margin, margin:-margin] = True
    decided = inner & (np.abs(edge) > 1e-6)
    np.testing.assert_array_equal(crossing.road_mask[decided], edge[decided] < 0)
    # everywhere, road pixels are near a centreline (roads continue beyond the frame)
    assert np.all(edge[crossing.road_mask] <= 0.5 * half_px.max() + 1.0)
    assert 0.05 < crossing.road_mask.mean() < 0.6


def test_centerline_raster_is_thin_connected_and_inside_mask(crossing: SyntheticScene) -> None:
    raster = crossing.centerline_raster
    assert raster.sum() > 192
    assert crossing.road_mask[raster].all()
    rows, cols = np.nonzero(raster)
    points = shapely.points(cols + 0.5, rows + 0.5)
    dist = np.min([shapely.distance(points, line) for line in crossing.centerlines], axis=0)
    assert dist.max() <= np.sqrt(0.5) + 1e-9
    # every branch starts on a road: the whole network is one 8-connected component
    assert ndimage.label(raster, structure=np.ones((3, 3)))[1] == 1
    # 1 pixel wide: no 4-connected L corners, so no 2 x 2 blocks away from junctions
    blocks = raster[:-1, :-1] & raster[1:, :-1] & raster[:-1, 1:] & raster[1:, 1:]
    assert blocks.sum() <= 4 * len(crossing.centerlines)


def test_x_junction_where_asked(crossing: SyntheticScene) -> None:
    n_x, n_t = _junctions(crossing)
    assert n_x == 1
    assert n_t >= 1
    tee = render_scene(192, 192, seed=2, n_through=(1, 0), n_branches=2)
    n_x, n_t = _junctions(tee)
    assert n_x == 0 and n_t >= 1


def test_invalid_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        render_scene(16, 64)
    with pytest.raises(ConfigError):
        render_scene(64, 64, gsd_m=0.0)
    with pytest.raises(ConfigError):
        render_scene(64, 64, n_through=(0, 0))


def test_written_samples_open_with_expected_crs_and_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("make_sample_data", SAMPLE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_sample_data", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    scene = render_scene(96, 160, seed=1, n_through=(1, 1), n_branches=0)
    sample = module.GeoSample("s", "EPSG:32633", 500_000.0, 5_000_000.0, seed=1,
                              n_through=(1, 1), n_branches=0)
    module.write_geotiff_scene(scene, sample, tmp_path)
    with rasterio.open(tmp_path / "s.tif") as src:
        assert src.crs.to_epsg() == 32633
        assert (src.count, src.height, src.width) == (3, 96, 160)
        assert src.res == (0.3, 0.3) and src.bounds.left == 500_000.0
        assert src.profile["compress"].lower() == "jpeg"
        assert np.abs(src.read().astype(int) - scene.image).mean() < 12  # lossy JPEG
        bounds = src.bounds
    with rasterio.open(tmp_path / "s_mask.tif") as src:
        assert src.crs.to_epsg() == 32633 and src.shape == (96, 160)
        np.testing.assert_array_equal(src.read(1), scene.road_mask.astype(np.uint8) * 255)
    lines = gpd.read_file(tmp_path / "s_centerlines.geojson")
    assert lines.crs.to_epsg() == 32633
    # the two crossing roads are split where they cross, each piece keeping its road's width,
    # and the four pieces share the crossing as a vertex (a network, as APLS expects)
    assert len(lines) == 4
    assert sorted(set(lines["width_m"])) == sorted(np.round(scene.road_width_m, 2))
    assert lines.length.sum() == pytest.approx(0.3 * sum(line.length for line in scene.centerlines))
    ends = [c for g in lines.geometry for c in (g.coords[0], g.coords[-1])]
    assert max(ends.count(c) for c in ends) == 4
    x0, y0, x1, y1 = lines.total_bounds
    assert bounds.left - 1e-3 <= x0 and x1 <= bounds.right + 1e-3
    assert bounds.bottom - 1e-3 <= y0 and y1 <= bounds.top + 1e-3
    # pixel (x, y) maps to (west + 0.3 x, north - 0.3 y)
    first = np.asarray(scene.centerlines[0].coords)[0]
    np.testing.assert_allclose(np.asarray(lines.geometry[0].coords)[0],
                               (500_000.0 + 0.3 * first[0], 5_000_000.0 - 0.3 * first[1]),
                               atol=1e-3)
