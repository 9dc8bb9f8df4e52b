"""Tiled execution: tiles with halos, seam-free stitched networks, bounded tile size."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from shapely.geometry import LineString

import geoseg
from geoseg.metrics import raster_buffer_scores
from geoseg.road.network import graph_to_lines, rasterize_lines
from geoseg.tiling import Tile, canonical, clip_to_core, drop_clip_vertices, parse_memory, stitch_pieces, tile_grid, tile_size_for_memory
from tests.conftest import SAMPLE_DATA, UTM_TRANSFORM, write_tif


def test_tile_grid_covers_the_scene_once_and_windows_hold_the_halo():
    tiles = tile_grid(300, 500, 128, 20)
    cover = np.zeros((300, 500), int)
    for t in tiles:
        cover[t.row_off : t.row_off + t.height, t.col_off : t.col_off + t.width] += 1
        assert t.win_row_off == max(0, t.row_off - 20) and t.win_col_off == max(0, t.col_off - 20)
        assert t.win_row_off + t.win_height == min(300, t.row_off + t.height + 20)
    assert (cover == 1).all() and len(tiles) == 3 * 4


def test_tile_size_follows_the_memory_budget():
    small = tile_size_for_memory(parse_memory("64MB"), 400, 100)
    large = tile_size_for_memory(parse_memory("1GB"), 400, 100)
    assert small % 256 == 0 and large % 256 == 0 and large > small
    assert (large + 200) ** 2 * 400 <= parse_memory("1GB")


def test_a_line_crossing_three_tiles_is_one_edge_after_stitching():
    import networkx as nx

    line = LineString([(10.5, 50.5), (290.5, 50.5)])
    graph = nx.MultiGraph()
    graph.add_node(0, x=10.5, y=50.5)
    graph.add_node(1, x=290.5, y=50.5)
    graph.add_edge(0, 1, geometry=line, saliency=1.0)
    pieces = []
    for tile in tile_grid(100, 300, 100, 10):
        pieces += clip_to_core(graph, tile)
    assert len(pieces) == 3
    from geoseg.road.network import dissolve_degree2

    stitched = canonical(drop_clip_vertices(dissolve_degree2(stitch_pieces(pieces, 1.0))))
    assert stitched.number_of_edges() == 1 and stitched.number_of_nodes() == 2
    (_, _, data), = stitched.edges(data=True)
    assert data["geometry"].equals(line)


def test_a_line_along_a_tile_border_is_kept_once():
    import networkx as nx

    graph = nx.MultiGraph()
    graph.add_node(0, x=10.5, y=100.5)
    graph.add_node(1, x=90.5, y=100.5)
    graph.add_edge(0, 1, geometry=LineString([(10.5, 100.5), (90.5, 100.5)]))
    pieces = [p for tile in tile_grid(200, 100, 100, 10) for p in clip_to_core(graph, tile)]
    assert len(pieces) == 1 and pieces[0][0].length == pytest.approx(80.0)


@pytest.fixture(scope="module")
def crossing_mask(tmp_path_factory):
    """Roads crossing at the corner of 4 tiles (tile 256) plus a diagonal through several tiles."""
    m = np.zeros((600, 600), np.uint8)
    m[245:267, :] = 255
    m[:, 245:267] = 255
    rr, cc = np.indices(m.shape)
    m[np.abs(rr - cc * 0.8 - 60) < 8] = 255
    return write_tif(tmp_path_factory.mktemp("tiles") / "cross.tif", m, CRS.from_epsg(32633), UTM_TRANSFORM)


def _centerlines(result):
    return rasterize_lines(graph_to_lines(result.graph), (result.geo.height, result.geo.width))


def test_tiled_equals_untiled_with_roads_crossing_tile_corners(crossing_mask):
    whole = geoseg.load_pipeline("mask_to_centerlines").run(crossing_mask)
    tiled = geoseg.load_pipeline("mask_to_centerlines", ["tile_px=256"]).run(crossing_mask)
    assert whole.tiles == 1 and tiled.tiles == 9
    scores = raster_buffer_scores(_centerlines(tiled), _centerlines(whole), 1)
    assert scores.quality > 0.99
    degrees = lambda r: sorted(d for _, d in r.graph.degree())  # noqa: E731
    assert degrees(tiled) == degrees(whole)
    assert np.array_equal(tiled.layers["centerline"], whole.layers["centerline"])


def test_tiled_raster_output_equals_untiled_file(tmp_path):
    from geoseg.pipeline.scene import process_scene

    model = str(SAMPLE_DATA / "roads.mjcr.npz")
    outputs = {}
    for tile_px in (None, 256):
        pipe = geoseg.load_pipeline("road_segmentation", [f"model={model}"] + ([f"tile_px={tile_px}"] if tile_px else []))
        done = process_scene(pipe, SAMPLE_DATA / "scene_a.tif", tmp_path / str(tile_px), stem="scene_a", fmt="shp")
        assert done.tiles == (1 if tile_px is None else 4)
        with rasterio.open(done.outputs[0]) as ds:
            outputs[tile_px] = ds.read(1)
            assert ds.profile["tiled"] and ds.crs == CRS.from_epsg(32633)
    agree = (outputs[None] == outputs[256]).mean()
    assert agree > 0.995  # graph cut per tile with a halo is an approximation


def test_tile_objects_slice_their_core():
    t = Tile(0, 100, 50, 20, 30, 90, 40, 40, 50)
    rows, cols = t.core_in_window
    assert (rows.start, rows.stop, cols.start, cols.stop) == (10, 30, 10, 40)
