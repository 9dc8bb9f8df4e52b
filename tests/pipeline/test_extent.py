"""The processing extent (issue 20): ``geoseg run --bbox/--bbox-crs/--aoi``, the engine setting
``extent`` and ``Pipeline.run(extent=...)``.

Only the extent's window (+ each pass's halo) is read and processed; rasters cover the window,
networks are clipped to the extent, statistics are measured over the window. Results inside the
extent match a full run's away from the cut (the statistics differ a little: they are the
window's, not the scene's).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage
from shapely.geometry import LineString, Polygon, box

import geoseg.pipeline.engine as engine
from geoseg.errors import ConfigError, InputMismatchError
from geoseg.pipeline.config import Extent
from geoseg.pipeline.engine import MemorySource, execute, scene_extent
from geoseg.pipeline.pipeline import load_pipeline
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo, Raster
from geoseg.tiling import clip_network
from tests.cli.test_cli_basics import geoseg
from tests.conftest import SAMPLE_DATA, UTM_TRANSFORM, plus_mask, write_tif

MASK = SAMPLE_DATA / "scene_a_mask.tif"
SCENE = SAMPLE_DATA / "scene_a.tif"
MODEL = SAMPLE_DATA / "roads.mjcr.npz"
# scene_a: 512 x 512 px of 0.3 m in EPSG:32633
X0, Y0, X1, Y1 = 533000.0, 5289846.4, 533153.6, 5290000.0
XM, YM = (X0 + X1) / 2, (Y0 + Y1) / 2
QUARTERS = {"top_left": [X0, YM, XM, Y1], "bottom_right": [XM, Y0, X1, YM]}
#: Away from the cut (metres), the part's network and the full run's agree within this (metres):
#: the statistics (road width, saliency scale) are measured over the part, not the scene.
CUT_M, AGREE_M = 10.0, 1.0
#: The scene's own pixels (no blocks), where extents fall on the scene's pixel grid exactly.
NATIVE = ["work_road_px=null"]


@pytest.fixture(scope="module")
def full_network() -> gpd.GeoDataFrame:
    return load_pipeline("mask_to_centerlines", NATIVE).run(MASK).lines


def _farthest(a: shapely.Geometry, b: shapely.Geometry) -> float:
    """Largest distance from a point of ``a`` (sampled every 0.3 m) to ``b``."""
    if a.is_empty:
        return 0.0
    points = shapely.points(shapely.get_coordinates(shapely.segmentize(a, 0.3)))
    return float(shapely.distance(points, b).max())


def _assert_matches_full_run(part: gpd.GeoDataFrame, full: gpd.GeoDataFrame, area: shapely.Geometry) -> None:
    """``part`` lies in ``area`` and equals ``full`` clipped to it, away from the cut."""
    assert len(part) > 0
    assert area.buffer(1e-6).covers(part.union_all())
    clipped = full.clip(area)
    inner = area.buffer(-CUT_M, join_style="mitre")
    ours, theirs = part.union_all(), clipped.union_all()
    assert _farthest(ours.intersection(inner), theirs) < AGREE_M
    assert _farthest(theirs.intersection(inner), ours) < AGREE_M
    assert part.length.sum() == pytest.approx(clipped.length.sum(), rel=0.05)


# ----------------------------------------------------------------------------- networks


def test_cli_bbox_quarter_equals_full_network_clipped(tmp_path, full_network):
    bbox = QUARTERS["top_left"]
    res = geoseg("run", "mask_to_centerlines", MASK, "-o", tmp_path, "--bbox", *bbox, "--progress", "none")
    assert res.returncode == 0, res.stderr
    lines = gpd.read_file(tmp_path / "scene_a_mask.shp")
    nodes = gpd.read_file(tmp_path / "scene_a_mask_nodes.shp")
    assert lines.crs == CRS.from_epsg(32633)
    _assert_matches_full_run(lines, full_network, box(*bbox))
    assert box(*bbox).buffer(1e-6).covers(nodes.union_all())
    # the run's settings (and so the manifest's hash) carry the extent: another bbox redoes the scene
    again = geoseg("run", "mask_to_centerlines", MASK, "-o", tmp_path, "--bbox", *QUARTERS["bottom_right"], "--progress", "json")
    done = [json.loads(line) for line in again.stdout.splitlines()][-1]
    assert again.returncode == 0 and done["skipped"] is False


@pytest.mark.parametrize("quarter", sorted(QUARTERS))
def test_python_api_bbox_equals_full_network_clipped(quarter, full_network):
    bbox = QUARTERS[quarter]
    result = load_pipeline("mask_to_centerlines", NATIVE).run(MASK, extent=bbox)
    assert (result.geo.width, result.geo.height) == (256, 256)
    assert result.geo.bounds == pytest.approx(bbox, abs=1e-6)
    _assert_matches_full_run(result.lines, full_network, box(*bbox))


@pytest.mark.parametrize("quarter", sorted(QUARTERS))
def test_a_bbox_on_pixel_blocks_is_the_box_on_the_block_grid(quarter, full_network):
    """By default the chain works on blocks: the box's blocks start at its corner and cover it."""
    bbox = QUARTERS[quarter]
    result = load_pipeline("mask_to_centerlines").run(MASK, extent=bbox)
    block_m = result.geo.transform.a
    assert block_m in (pytest.approx(0.3 * f) for f in (2, 3, 4, 5))  # whole blocks of 0.3 m pixels
    left, bottom, right, top = result.geo.bounds
    assert (left, top) == pytest.approx((bbox[0], bbox[3]), abs=1e-6)
    assert 0 <= right - bbox[2] < block_m and 0 <= bbox[1] - bottom < block_m
    _assert_matches_full_run(result.lines, full_network, box(*bbox).buffer(block_m, join_style="mitre"))


def test_a_bbox_over_the_whole_scene_changes_nothing(full_network):
    result = load_pipeline("mask_to_centerlines", NATIVE).run(MASK, extent=[X0 - 50, Y0 - 50, X1 + 50, Y1 + 50])
    assert result.lines.geometry.geom_equals(full_network.geometry).all()


def test_extent_engine_setting_from_yaml(tmp_path, full_network):
    pipe = load_pipeline("mask_to_centerlines", [*NATIVE, f"extent=[{X0}, {YM}, {XM}, {Y1}]"])
    path = tmp_path / "quarter.yaml"
    pipe.to_yaml(path)
    assert "extent:" in path.read_text()
    res = geoseg("run", path, MASK, "-o", tmp_path / "out", "--progress", "none")
    assert res.returncode == 0, res.stderr
    _assert_matches_full_run(gpd.read_file(tmp_path / "out" / "scene_a_mask.shp"), full_network, box(*QUARTERS["top_left"]))


# ----------------------------------------------------------------------------- rasters


def test_raster_output_covers_the_window(tmp_path):
    # a bbox not on pixel edges: the window is the whole pixels covering it
    bbox = [X0 + 10.05, Y0 + 50.0, X0 + 100.0, Y0 + 140.0]
    res = geoseg("run", "road_segmentation", SCENE, "--set", f"model={MODEL}", "-o", tmp_path, "--bbox", *bbox, "--progress", "none")
    assert res.returncode == 0, res.stderr
    full = load_pipeline("road_segmentation", [f"model={MODEL}"]).run(SCENE)
    col0, row0 = int(10.05 // 0.3), int(round((Y1 - (Y0 + 140.0)) / 0.3))
    col1, row1 = int(np.ceil(100.0 / 0.3)), int(np.ceil((Y1 - (Y0 + 50.0)) / 0.3))
    with rasterio.open(tmp_path / "scene_a.tif") as out:
        assert (out.width, out.height) == (col1 - col0, row1 - row0)
        assert out.crs == full.geo.crs
        assert out.transform.almost_equals(full.geo.transform @ Affine.translation(col0, row0))
        mask = out.read(1) > 0
    # the same mask but for the graph cut per tile and the window's statistics
    assert (mask == full.layers["mask"][row0:row1, col0:col1]).mean() > 0.97


# ----------------------------------------------------------------------------- AOI in another CRS


def test_aoi_geojson_in_wgs84_clips_to_the_polygon(tmp_path, full_network):
    utm = Polygon([(X0 + 20, Y0 + 30), (X1 - 10, Y0 + 60), (X1 - 40, Y1 - 15), (X0 + 5, Y1 - 40)])
    aoi = tmp_path / "aoi.geojson"
    gpd.GeoDataFrame(geometry=[utm], crs="EPSG:32633").to_crs("EPSG:4326").to_file(aoi)
    res = geoseg("run", "mask_to_centerlines", MASK, "-o", tmp_path / "out", "--aoi", aoi, "--progress", "none")
    assert res.returncode == 0, res.stderr
    lines = gpd.read_file(tmp_path / "out" / "scene_a_mask.shp")
    nodes = gpd.read_file(tmp_path / "out" / "scene_a_mask_nodes.shp")
    area = gpd.read_file(aoi).to_crs(lines.crs).union_all()  # the polygon as geoseg reprojects it
    assert area.buffer(0.01).covers(nodes.union_all())  # nodes outside are dropped
    _assert_matches_full_run(lines, full_network, area.buffer(1e-3))


def test_aoi_without_polygons_or_missing_stops_before_any_scene(tmp_path):
    lines = tmp_path / "lines.geojson"
    gpd.GeoDataFrame(geometry=[LineString([(0, 0), (1, 1)])], crs="EPSG:4326").to_file(lines)
    res = geoseg("run", "mask_to_centerlines", MASK, "-o", tmp_path / "out", "--aoi", lines)
    assert res.returncode == 1
    assert res.stderr.strip() == f"geoseg: error: {lines}: no polygons to use as the area of interest (the file holds LineString); draw the area as polygons"
    res = geoseg("run", "mask_to_centerlines", MASK, "-o", tmp_path / "out", "--aoi", tmp_path / "nope.gpkg")
    assert res.returncode == 1 and res.stderr.strip() == f"geoseg: error: {tmp_path / 'nope.gpkg'}: no such file"
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- errors


def test_extent_outside_a_scene_fails_that_scene_only(tmp_path):
    plus = write_tif(tmp_path / "plus.tif", plus_mask(), CRS.from_epsg(32633), UTM_TRANSFORM)  # 500000..500060, 4999940..5000000
    bbox = ["500010", "4999950", "500050", "4999990"]
    res = geoseg("run", "mask_to_centerlines", MASK, plus, "-o", tmp_path / "out", "--bbox", *bbox, "--workers", "1", "--progress", "json")
    assert res.returncode == 1
    events = {Path(e["input"]).name: e for e in map(json.loads, res.stdout.splitlines()[1:])}
    assert events["plus.tif"]["status"] == "done"
    message = (
        f"{MASK}: the bbox 500010 4999950 500050 4999990 does not overlap the scene "
        "(bounds 533000.000, 5289846.400, 533153.600, 5290000.000 in EPSG:32633); give an extent that overlaps these bounds"
    )
    assert events["scene_a_mask.tif"]["error"] == message
    assert message in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(InputMismatchError, match="does not overlap the scene"):
        load_pipeline("mask_to_centerlines").run(MASK, extent={"bbox": [0, 0, 1, 1], "crs": "EPSG:4326"})


def test_bbox_crs_on_a_scene_without_georeferencing(tmp_path):
    flat = write_tif(tmp_path / "flat.tif", plus_mask(), None, None)
    res = geoseg("run", "mask_to_centerlines", flat, "-o", tmp_path / "out", "--bbox", "0", "0", "1", "1", "--bbox-crs", "EPSG:4326")
    assert res.returncode == 1
    assert f"{flat}: the scene has no georeferencing, so the bbox 0 0 1 1 in EPSG:4326 cannot be placed on it; give the extent in the scene's pixel coordinates" in res.stderr
    # in pixel coordinates (x = column, y = row) it works
    result = load_pipeline("mask_to_centerlines", NATIVE).run(flat, extent=[10.5, 20.2, 70, 100])
    assert (result.geo.width, result.geo.height) == (60, 80) and result.geo.transform == Affine.translation(10, 20)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bbox", "5", "0", "3", "8"], "Invalid value for '--bbox': needs XMIN < XMAX and YMIN < YMAX (got 5 0 3 8)"),
        (["--bbox", "0", "8", "3", "8"], "Invalid value for '--bbox': needs XMIN < XMAX and YMIN < YMAX (got 0 8 3 8)"),
        (["--bbox", "0", "0", "3"], "Option '--bbox' requires 4 arguments."),
        (["--bbox", "0", "0", "3", "8", "--aoi", "a.gpkg"], "--bbox and --aoi both give the processing extent: use one of them"),
        (["--bbox-crs", "EPSG:4326"], "--bbox-crs gives the CRS of --bbox: add --bbox XMIN YMIN XMAX YMAX"),
        (["--bbox", "0", "0", "3", "8", "--bbox-crs", "EPSG:99999"], "Invalid value for '--bbox-crs': unknown CRS 'EPSG:99999'"),
    ],
)
def test_malformed_extent_options_are_usage_errors(tmp_path, args, message):
    res = geoseg("run", "mask_to_centerlines", MASK, "-o", tmp_path / "out", *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert not (tmp_path / "out").exists()


def test_extent_with_a_sequence_pipeline_is_a_usage_error(tmp_path):
    res = geoseg("run", "sequence_objects", SAMPLE_DATA / "sequence" / "frames", "-o", tmp_path / "out", "--bbox", "0", "0", "5", "5")
    assert res.returncode == 2
    assert "--bbox and --aoi work with raster pipelines; a sequence pipeline processes whole frames" in res.stderr


def test_malformed_extent_setting_is_a_config_error():
    with pytest.raises(ConfigError, match=r"field 'extent': bbox \[xmin, ymin, xmax, ymax\] needs .* xmin < xmax"):
        load_pipeline("mask_to_centerlines", ["extent=[5, 0, 3, 8]"])
    with pytest.raises(ConfigError, match="give either bbox"):
        load_pipeline("mask_to_centerlines").run(MASK, extent={"crs": "EPSG:4326"})


# ----------------------------------------------------------------------------- what is read


def test_pixels_read_are_bounded(tmp_path, monkeypatch):
    size, gsd = 1536, 0.5
    mask = np.zeros((size, size), np.uint8)
    for c in range(100, size, 300):  # a grid of 6 m roads
        mask[c - 6 : c + 6, :] = 255
        mask[:, c - 6 : c + 6] = 255
    path = write_tif(tmp_path / "big.tif", mask, CRS.from_epsg(32633), Affine(gsd, 0, 500000.0, 0, -gsd, 5000000.0), tiled=True, blockxsize=256, blockysize=256)
    reads: list[tuple[int, int, int, int]] = []
    original = engine.read_dataset_window

    def spy(ds: Any, path: Any, geo: GeoInfo, row_off: int, col_off: int, height: int, width: int, **kw: Any) -> Raster:
        reads.append((row_off, col_off, height, width))
        return original(ds, path, geo, row_off, col_off, height, width, **kw)

    monkeypatch.setattr(engine, "read_dataset_window", spy)
    first = 640  # the window: rows and columns 640..896 (128 m)
    x, y = 500000.0 + gsd * first, 5000000.0 - gsd * first
    result = load_pipeline("mask_to_centerlines").run(path, extent=[x, y - 128, x + 128, y])
    assert (result.geo.width, result.geo.height) == (256, 256) and len(result.lines) > 0
    # every pass reads the window and its halos (road width scales, 40 m of width measure): < 100 m around
    margin = int(100 / gsd)
    assert all(r >= first - margin and c >= first - margin and r + h <= first + 256 + margin and c + w <= first + 256 + margin for r, c, h, w in reads)
    assert sum(h * w for _, _, h, w in reads) < 0.5 * size * size  # a full run reads more than 4 times the scene


# ----------------------------------------------------------------------------- halos, exactly


class _Grow(Step):
    """Grey dilation over 11 x 11 pixels (an exact, order-free neighbourhood operation)."""

    type_name = "test_grow"
    takes = ("image",)
    gives = ("probability",)

    def halo_px(self, geo: GeoInfo) -> int:
        return 5

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"probability": ndimage.maximum_filter(layers["image"][0].astype(np.float32), size=11, mode="constant")}


class _FittedGrow(Step):
    """A dilation whose radius (its halo) comes from statistics: 9 px once measured, 1 px before."""

    type_name = "test_fitted_grow"
    takes = ("probability",)
    gives = ("saliency",)
    stats_inputs = ("probability",)

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> int:
        return 1

    def fit(self, partials: list[Any]) -> Step:
        return self.with_fitted(radius=9 if partials else 1)

    def halo_px(self, geo: GeoInfo) -> int:
        return self.fitted("radius")

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"saliency": ndimage.maximum_filter(layers["probability"], size=2 * self.fitted("radius") + 1, mode="constant")}


def test_halos_make_the_window_exact_and_a_short_guess_is_replanned(caplog):
    rng = np.random.default_rng(0)
    image = (rng.random((1, 300, 300)) > 0.995).astype(np.uint8) * 255
    geo = GeoInfo(300, 300, CRS.from_epsg(32633), UTM_TRANSFORM, (0.5, 0.5), True)
    source = MemorySource(Raster(image, geo, np.ones((300, 300), bool)))
    steps = [_Grow(), _FittedGrow()]
    full = execute(steps, source, tile_px=64)
    area = scene_extent(Extent(bbox=[500030.2, 4999900, 500080, 4999960.3]), geo, "<memory>")
    w = area.window
    assert (w.row0, w.col0, w.row1, w.col1) == (79, 60, 200, 160)
    with caplog.at_level(logging.DEBUG, logger="geoseg.engine"):
        part = execute(steps, source, tile_px=64, extent=area)
    assert "need wider pass regions than planned" in caplog.text  # the 1 px guess was replanned to 9 px
    assert part.geo == area.geo(geo)
    for name in ("probability", "saliency"):
        np.testing.assert_array_equal(part.layers[name], full.layers[name][w.row0 : w.row1, w.col0 : w.col1])


class _CountMeasured(Step):
    """Gives a layer holding the number of pixels its statistics were measured over."""

    type_name = "test_count_measured"
    takes = ("image",)
    gives = ("mask",)
    stats_inputs = ("image",)

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> int:
        rows, cols = ctx.core
        return int(layers["image"][0, rows, cols].size)

    def fit(self, partials: list[Any]) -> Step:
        return self.with_fitted(pixels=sum(partials))

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"mask": np.full(layers["image"].shape[1:], self.fitted("pixels"), dtype=np.int64)}


def test_statistics_are_measured_over_the_window_only():
    geo = GeoInfo(300, 300, CRS.from_epsg(32633), UTM_TRANSFORM, (0.5, 0.5), True)
    source = MemorySource(Raster(np.zeros((1, 300, 300), np.uint8), geo, np.ones((300, 300), bool)))
    steps = [_Grow(), _CountMeasured()]  # the halo of _Grow makes the pass read beyond the window
    assert (execute(steps, source, tile_px=64).layers["mask"] == 300 * 300).all()
    area = scene_extent(Extent(bbox=[500030.2, 4999900, 500080, 4999960.3]), geo, "<memory>")
    assert (execute(steps, source, tile_px=64, extent=area).layers["mask"] == 121 * 100).all()


def test_clip_network_cuts_edges_and_drops_outside_nodes():
    graph = nx.MultiGraph()
    graph.add_node("a", x=1.0, y=1.0)
    graph.add_node("b", x=20.0, y=1.0)
    graph.add_node("c", x=5.0, y=5.0)
    graph.add_node("d", x=30.0, y=30.0)
    graph.add_edge("a", "b", geometry=LineString([(1, 1), (20, 1)]), saliency=2.0)
    graph.add_edge("a", "c", geometry=LineString([(1, 1), (5, 5)]), saliency=1.0)
    graph.add_edge("b", "d", geometry=LineString([(20, 1), (30, 30)]), saliency=3.0)
    out = clip_network(graph, box(0, 0, 10, 10))
    assert set(out.nodes) == {"a", "c", ("cut", 1)}
    assert out.nodes[("cut", 1)] == {"x": 10.0, "y": 1.0}
    cut = out.get_edge_data("a", ("cut", 1))[0]
    assert cut["saliency"] == 2.0 and cut["geometry"].equals(LineString([(1, 1), (10, 1)]))
    assert out.number_of_edges() == 2
