"""Working on pixel blocks (issue 18): block means, the road-width measurement, sub-pixel placement."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoseg import Pipeline
from geoseg.pipeline.coarsen import CoarsenedSource, block_mean, working_source
from geoseg.pipeline.engine import MemorySource
from geoseg.pipeline.pipeline import load_pipeline
from geoseg.raster import GeoInfo, Raster
from geoseg.road.network import skeleton_to_graph
from geoseg.road.nms import coverage_offsets
from geoseg.steps.masks import RoadShape, ThresholdMask
from geoseg.tiling import Tile

GSD = 0.25


def _band_mask(size: int, width_px: float, angle_deg: float, offset: float = 0.0) -> np.ndarray:
    """A 0/255 mask of a straight road of ``width_px`` through the centre at ``angle_deg``."""
    rows, cols = np.indices((size, size)) + 0.5
    a = np.deg2rad(angle_deg)
    across = -(cols - size / 2) * np.sin(a) + (rows - size / 2) * np.cos(a) - offset
    return (np.abs(across) < width_px / 2).astype(np.uint8) * 255


def _raster(mask: np.ndarray) -> Raster:
    geo = GeoInfo(mask.shape[1], mask.shape[0], CRS.from_epsg(32618), Affine(GSD, 0, 1000, 0, -GSD, 2000), (GSD, GSD), True)
    return Raster(mask[None], geo, np.ones(mask.shape, bool), "band")


def test_block_mean_averages_valid_pixels_and_partial_edge_blocks():
    a = np.arange(30, dtype=np.float32).reshape(1, 5, 6)
    valid = np.ones((5, 6), bool)
    valid[0, 0] = False
    means, ok = block_mean(a, valid, 2)
    assert means.shape == (1, 3, 3)
    assert means[0, 0, 0] == pytest.approx((1 + 6 + 7) / 3)  # the invalid pixel does not count
    assert means[0, 2, 2] == pytest.approx((28 + 29) / 2)  # bottom-right: a 1 x 2 partial block
    assert ok.all()
    means, ok = block_mean(a, np.zeros((5, 6), bool), 3)
    assert not ok.any() and (means == 0).all()


def test_coarsened_source_reads_the_block_means_of_any_window():
    mask = _band_mask(100, 20, 30)
    inner = MemorySource(_raster(mask))
    source = CoarsenedSource(inner, 4)
    assert (source.geo.width, source.geo.height, source.geo.gsd_m, source.coarsening) == (25, 25, 4 * GSD, 4)
    assert source.geo.transform @ (1, 1) == inner.geo.transform @ (4, 4)
    whole, _ = block_mean(mask[None], np.ones(mask.shape, bool), 4)
    part = source.read(Tile(0, 5, 3, 10, 12, 4, 2, 12, 14))
    assert np.array_equal(part.array, whole[:, 4:16, 2:16])
    assert part.geo.transform == source.geo.window(4, 2, 12, 14).transform


def test_a_kept_grid_reads_as_the_scene_read_under_each_tile():
    mask = _band_mask(130, 20, 30)
    valid = np.ones(mask.shape, bool)
    valid[:7, :40] = False  # a corner without data: invalid blocks
    raster = Raster(mask[None], _raster(mask).geo, valid, "band")
    kept, direct = CoarsenedSource(MemorySource(raster), 4), CoarsenedSource(MemorySource(raster), 4, keep_grid=False)
    for tile in (Tile(0, 0, 0, 10, 12, 0, 0, 12, 14), Tile(1, 20, 25, 13, 8, 18, 23, 15, 10)):
        a, b = kept.read(tile), direct.read(tile)
        assert np.array_equal(a.array, b.array) and np.array_equal(a.valid, b.valid)
    assert kept._grid is not None and direct._grid is None
    assert not kept.read(Tile(0, 0, 0, 2, 10, 0, 0, 2, 10)).valid[0, :9].any()  # blocks of 4 rows with 3 valid: under half
    copy = pickle.loads(pickle.dumps(kept))  # as sent to a Dask worker: no grid, reads under each tile
    assert copy._grid is None and np.array_equal(copy.read(Tile(0, 0, 0, 10, 12, 0, 0, 12, 14)).array, kept.read(Tile(0, 0, 0, 10, 12, 0, 0, 12, 14)).array)


def test_blocks_of_a_probability_hold_the_share_above_the_threshold():
    """A soft map's blocks hold how much of them is above the threshold, not the mean probability."""
    prob = np.zeros((40, 40), np.float32)
    prob[:, :20] = 0.6  # road, faint: mean width 2·800 / (π/4 · 40) = 50.9 px, blocks of 6 px
    prob[:, 20:24] = 0.3  # below threshold 0.5: not road
    step = ThresholdMask(threshold=0.5, work_road_px=8)
    result = Pipeline([step]).run(_raster(prob))
    factor = round(result.geo.gsd_m / GSD)
    assert factor == 6
    expected = block_mean((prob > 0.5)[None], np.ones(prob.shape, bool), factor)[0][0]
    assert np.allclose(result.layers["mask"], expected)
    assert result.layers["mask"].max() == 1.0  # a block wholly on the faint road is all road


@pytest.mark.parametrize("angle", [0, 17, 45, 71])
def test_mean_road_width_from_area_and_boundary(angle):
    mask = _band_mask(400, 24, angle) > 0
    width = RoadShape.of(mask).mean_width_px()
    # exact on average over angles: 4/π / (|cos| + |sin|) times the width at a given angle
    a = np.deg2rad(angle)
    assert width == pytest.approx(24 * 4 / np.pi / (abs(np.cos(a)) + abs(np.sin(a))), rel=0.03)
    assert RoadShape.of(np.zeros((5, 5), bool)).mean_width_px() is None


def test_threshold_mask_chooses_blocks_from_the_road_width():
    source = MemorySource(_raster(_band_mask(256, 33, 20)))
    steps = [ThresholdMask(work_road_px=8)]
    work = working_source(steps, source)
    assert work.steps[0].coarsening() == 4  # width ~33 px: blocks of floor(33 / 8)
    assert isinstance(work.source, CoarsenedSource) and work.source.factor == 4
    assert working_source([ThresholdMask(work_road_px=40)], source).source is source  # a road narrower than asked: native
    assert working_source([ThresholdMask()], source).source is source  # not asked


def test_threshold_mask_gives_the_road_share_of_blocks():
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :4] = 255  # mean width 2·32 / (π/4 · 8 sides) = 10.2 px: blocks of floor(10.2 / 3) = 3 px
    result = Pipeline([ThresholdMask(work_road_px=3)]).run(_raster(mask))
    assert result.geo.gsd_m == pytest.approx(3 * GSD)
    share = result.layers["mask"]
    assert share.dtype == np.float32
    assert np.allclose(share, [[1, 1 / 3, 0]] * 3)


def test_coverage_offsets_find_the_middle_of_a_shifted_road():
    cov = np.zeros((20, 20), np.float32)
    cov[6:11] = 1.0
    cov[11] = 0.5  # the road spans rows 6 to 11.5: its middle is at y = 8.75, pixel 8's centre at 8.5
    line = np.zeros((20, 20), bool)
    line[8, 2:18] = True
    off = coverage_offsets(cov, np.zeros((20, 20)), line, 6)
    assert off[1, 8, 5] == pytest.approx((7 * 0 + (-2 - 1 + 0 + 1 + 2) + 3 * 0.5) / 5.5, abs=1e-5)
    assert off[1, 8, 5] > 0 and np.all(off[0] == 0)
    assert np.all(off[:, ~line] == 0)
    vertical = coverage_offsets(cov.T, np.full((20, 20), np.pi / 2), line.T, 6)
    assert vertical[0, 5, 8] == pytest.approx(off[1, 8, 5], abs=1e-5) and np.abs(vertical[1]).max() < 1e-6  # the same road, transposed


def test_offsets_move_path_vertices_and_ends_but_not_junctions():
    skel = np.zeros((5, 9), bool)
    skel[2, 1:8] = True
    offsets = np.zeros((2, 5, 9), np.float32)
    offsets[1, 2, :] = 0.3
    graph = skeleton_to_graph(skel, offsets=offsets)
    ((_, _, data),) = graph.edges(data=True)
    assert np.allclose(shapely.get_coordinates(data["geometry"])[:, 1], 2.8)
    skel[0:5, 4] = True  # a crossing: its junction pixels stay put
    offsets[0, :, 4] = 0.3
    graph = skeleton_to_graph(skel, offsets=offsets)
    junctions = [n for n in graph if graph.degree(n) == 4]
    assert len(junctions) == 1 and (graph.nodes[junctions[0]]["x"], graph.nodes[junctions[0]]["y"]) == (4.5, 2.5)
    with pytest.raises(Exception, match="offsets shape"):
        skeleton_to_graph(skel, offsets=offsets[:, :4])


@pytest.mark.parametrize("angle", [0, 23, 60])
def test_coarse_and_native_runs_put_the_centerline_on_the_road_axis(angle):
    """The shipped pipeline on blocks (default) and on the scene's pixels: lines within a pixel of the axis."""
    size, width = 384, 36.0
    mask = _band_mask(size, width, angle, offset=0.37)
    raster = _raster(mask)
    a = np.deg2rad(angle)
    centre = np.array([1000 + size / 2 * GSD, 2000 - size / 2 * GSD])
    normal = np.array([-np.sin(a), -np.cos(a)])  # world y points up
    # mean width read as 36 · 4/π / (|cos| + |sin|): 46 px at 0°, about 34 px at 23° and 60°
    for work_road_px, blocks in ((8, 5 if angle == 0 else 4), (None, 1)):
        pipeline = load_pipeline("mask_to_centerlines", {"work_road_px": work_road_px})
        result = pipeline.run(raster)
        assert result.geo.gsd_m == pytest.approx(GSD * blocks)
        lines = list(result.lines.geometry)
        assert lines, f"no line with work_road_px={work_road_px}"
        xy = np.concatenate([shapely.get_coordinates(shapely.segmentize(line, GSD)) for line in lines])
        far = np.linalg.norm(xy - centre, axis=1) < size / 2 * GSD - 8  # away from the scene border
        across = ((xy[far] - centre) @ normal) / GSD - 0.37
        assert np.abs(across).mean() < 0.6, (work_road_px, np.abs(across).mean())
        assert np.abs(across).max() < 1.5, (work_road_px, np.abs(across).max())


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("work_road_px", ["8", "null"])  # on pixel blocks, on the scene's own pixels
def test_lengths_of_a_scene_without_georeferencing_are_its_pixels_times_the_assumed_gsd(work_road_px: str) -> None:
    from tests.conftest import SAMPLE_DATA

    lines = load_pipeline("mask_to_centerlines", [f"work_road_px={work_road_px}", "assume_gsd_m=0.3"]).run(SAMPLE_DATA / "tile_c_mask.png").lines
    assert len(lines) >= 3
    np.testing.assert_allclose(lines["length_m"], lines.length * 0.3, atol=1e-3)  # written to the millimetre
