"""Layers that steps declare (``Step.new_layers``): a plugin adds a raster or a features layer, and the engine tiles and writes it (issue 23)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import geopandas as gpd
import numpy as np
import pytest
import rasterio

import geoseg
from geoseg.errors import ConfigError
from geoseg.pipeline import load_pipeline
from geoseg.pipeline.registry import register_step
from geoseg.pipeline.step import Step, StepContext, layer_kind, register_layer
from tests.conftest import SAMPLE_DATA


@register_step
class _BrightRoofs(Step):
    """A plugin's raster layer: pixels brighter than a level, after a 3x3 mean (a halo of 1 px)."""

    type_name = "test_bright_roofs"
    takes = ("image",)
    gives = ("bright_roofs",)
    new_layers: ClassVar[dict[str, str]] = {"bright_roofs": "raster"}
    level: float = 150.0

    def halo_px(self, geo: Any) -> int:
        return 1

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        grey = np.pad(layers["image"].astype(np.float32).mean(axis=0), 1, mode="edge")
        mean = sum(grey[1 + dy : grey.shape[0] - 1 + dy, 1 + dx : grey.shape[1] - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
        return {"bright_roofs": (mean > self.level).astype(np.uint8)}


@register_step
class _LongRoads(Step):
    """A plugin's features layer, from the network (pixel space of the scene): its edges of at least ``min_m`` metres, in the scene's CRS."""

    type_name = "test_long_roads"
    takes = ("network",)
    gives = ("long_roads",)
    new_layers: ClassVar[dict[str, str]] = {"long_roads": "features"}
    min_m: float = 60.0

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        from geoseg.vector import to_crs_coords

        lines = [d["geometry"] for _, _, d in layers["network"].edges(data=True) if d["geometry"].length >= ctx.px(self.min_m)]
        in_crs = to_crs_coords(np.asarray(lines, dtype=object), ctx.geo)
        return {"long_roads": gpd.GeoDataFrame({"length_m": [line.length for line in in_crs]}, geometry=list(in_crs), crs=ctx.geo.crs)}


def test_a_declared_raster_layer_is_tiled_stitched_and_written(tmp_path: Path) -> None:
    scene = SAMPLE_DATA / "scene_a.tif"
    whole = geoseg.Pipeline([{"type": "test_bright_roofs"}], outputs=["bright_roofs"]).run(scene).layers["bright_roofs"]
    assert 0.001 < whole.mean() < 0.5
    tiled = geoseg.Pipeline([{"type": "test_bright_roofs"}], outputs=["bright_roofs"], engine={"tile_px": 128})
    [report] = tiled.run_batch([scene], tmp_path)
    assert report.status == "done"
    with rasterio.open(report.outputs[0]) as ds, rasterio.open(scene) as src:
        assert ds.crs == src.crs and ds.transform == src.transform
        np.testing.assert_array_equal(ds.read(1), whole)  # 16 tiles with their halos give the untiled layer


def test_a_declared_features_layer_comes_from_the_network_and_is_written(tmp_path: Path) -> None:
    spec = load_pipeline("mask_to_centerlines").to_dict()
    spec["steps"].append({"type": "test_long_roads", "min_m": 60})
    spec["outputs"] = ["network", "long_roads"]
    [report] = geoseg.Pipeline.from_dict(spec).run_batch([SAMPLE_DATA / "scene_a_mask.tif"], tmp_path, fmt="gpkg")
    assert report.status == "done", report.error
    edges = gpd.read_file(report.outputs[0], layer="edges")
    long_roads = gpd.read_file(report.outputs[0], layer="long_roads")
    assert 0 < len(long_roads) < len(edges)
    assert sorted(np.round(long_roads.length, 3)) == sorted(np.round(edges.length[edges.length >= 60], 3))
    assert long_roads.crs == edges.crs


def test_undeclared_or_misplaced_layers_are_refused_with_the_way_to_declare_them() -> None:
    class _Undeclared(Step):
        type_name = "test_undeclared"
        takes = ("image",)
        gives = ("undeclared_buildings",)

    register_step(_Undeclared)
    expected = r"step 1 \(test_undeclared\): layer 'undeclared_buildings' has no declared kind.*new_layers = \{'undeclared_buildings': 'raster'\}"
    with pytest.raises(ConfigError, match=expected):
        geoseg.Pipeline([{"type": "test_undeclared"}], outputs=["undeclared_buildings"])

    class _TakesBlobs(Step):
        type_name = "test_takes_blobs"
        takes = ("blobs",)
        gives = ("mask",)

    register_step(_TakesBlobs)
    with pytest.raises(ConfigError, match=r"step 2 \(test_takes_blobs\): takes \['blobs'\], features that a raster step gives tile by tile"):
        geoseg.Pipeline([{"type": "test_blobs"}, {"type": "test_takes_blobs"}], outputs=["mask"])


@register_step
class _Blobs(Step):
    """A plugin's features layer from pixels (e.g. building footprints): one polygon per 8-connected blob of non-zero pixels."""

    type_name = "test_blobs"
    takes = ("image",)
    gives = ("blobs",)
    new_layers: ClassVar[dict[str, str]] = {"blobs": "features"}

    def halo_px(self, geo: Any) -> int:
        return 12  # at least the largest blob: a tile sees whole every blob it owns

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        from rasterio.features import shapes
        from shapely.geometry import shape

        found = layers["image"][0] > 0
        polygons = [shape(g) for g, v in shapes(found.astype(np.uint8), mask=found, transform=ctx.geo.transform, connectivity=8) if v]
        return {"blobs": gpd.GeoDataFrame({"area_m2": [p.area for p in polygons]}, geometry=polygons, crs=ctx.geo.crs)}


def _blob_scene(path: Path) -> list[tuple[int, int, int]]:
    """A 300 x 300 scene at 0.5 m with 60 squares of 2-10 px, some on the borders of 64-px tiles; returns (row, col, size)."""
    rng = np.random.default_rng(7)
    image = np.zeros((1, 300, 300), np.uint8)
    squares: list[tuple[int, int, int]] = []
    while len(squares) < 60:
        size, row, col = int(rng.integers(2, 11)), *(int(v) for v in rng.integers(0, 290, 2))
        if image[0, max(row - 1, 0) : row + size + 1, max(col - 1, 0) : col + size + 1].any():
            continue  # apart: one blob per square
        image[0, row : row + size, col : col + size] = 255
        squares.append((row, col, size))
    transform = rasterio.transform.from_origin(500000, 4000000, 0.5, 0.5)
    with rasterio.open(path, "w", driver="GTiff", width=300, height=300, count=1, dtype="uint8", crs="EPSG:32633", transform=transform) as ds:
        ds.write(image)
    return squares


def test_a_features_layer_from_pixels_is_gathered_from_the_tiles_once_each(tmp_path: Path) -> None:
    scene = tmp_path / "blobs.tif"
    squares = _blob_scene(scene)
    untiled = geoseg.Pipeline([{"type": "test_blobs"}], outputs=["blobs"]).run(scene).features("blobs")
    expected = sorted(size * size * 0.25 for _, _, size in squares)
    assert sorted(untiled["area_m2"]) == expected
    tiled = geoseg.Pipeline([{"type": "test_blobs"}], outputs=["blobs"], engine={"tile_px": 64})
    assert sorted(tiled.run(scene).features("blobs")["area_m2"]) == expected  # 25 tiles: every square once, whole
    [report] = tiled.run_batch([scene], tmp_path / "out", fmt="gpkg")
    assert report.status == "done", report.error
    written = gpd.read_file(report.outputs[0], layer="blobs")
    assert sorted(written["area_m2"]) == expected and written.crs == "EPSG:32633"
    # an AOI keeps the features whose representative point lies in it, as the network is clipped to it
    from shapely.geometry import Point, Polygon

    diamond = Polygon([(500075, 3999990), (500140, 3999925), (500075, 3999860), (500010, 3999925)])
    gpd.GeoDataFrame(geometry=[diamond], crs="EPSG:32633").to_file(tmp_path / "aoi.gpkg")
    part = tiled.run(scene, extent=tmp_path / "aoi.gpkg").features("blobs")
    inside = [s * s * 0.25 for r, c, s in squares if diamond.contains(Point(500000 + (c + s / 2) * 0.5, 4000000 - (r + s / 2) * 0.5))]
    assert 0 < len(inside) < len(squares) and sorted(part["area_m2"]) == sorted(inside)


def test_a_layer_keeps_one_kind() -> None:
    assert layer_kind("probability") == "raster" and layer_kind("nodes") == "vector"
    with pytest.raises(ConfigError, match="'probability' is already a raster layer"):
        register_layer("probability", "features")
    with pytest.raises(ConfigError, match="kind 'vector' cannot be declared"):
        register_layer("roads_again", "vector")
