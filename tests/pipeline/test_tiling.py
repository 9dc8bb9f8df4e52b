"""Tiled execution: tiles with halos, seam-free stitched networks, bounded tile size."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from shapely.geometry import LineString

import geoseg
from geoseg.metrics import raster_buffer_scores
from geoseg.pipeline.scratch import FileScratch
from geoseg.road.network import graph_to_lines, rasterize_lines
from geoseg.tiling import Tile, canonical, clip_to_core, drop_clip_vertices, parse_memory, stitch_pieces, tile_grid, tile_size_for_memory
from tests.conftest import SAMPLE_DATA, UTM_TRANSFORM, write_tif

#: The scene's own pixels (no blocks): these tests count tiles of the scene's pixel grid.
NATIVE = ["work_road_px=null"]


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


@pytest.mark.parametrize("scratch", ["memory", "files"])
def test_tiled_equals_untiled_with_roads_crossing_tile_corners(crossing_mask, scratch, monkeypatch):
    import geoseg.pipeline.engine as engine

    opened = []
    monkeypatch.setattr(engine, "FileScratch", lambda *a, **k: opened.append(1) or FileScratch(*a, **k))
    whole = geoseg.load_pipeline("mask_to_centerlines", NATIVE).run(crossing_mask)
    # 16 MB leaves no room for 3 scene-sized intermediate layers in memory: they go to files
    settings = [*NATIVE, "tile_px=256"] + (["max_memory=16MB"] if scratch == "files" else [])
    tiled = geoseg.load_pipeline("mask_to_centerlines", settings).run(crossing_mask)
    assert len(opened) == (1 if scratch == "files" else 0)
    assert whole.tiles == 1 and tiled.tiles == 9
    scores = raster_buffer_scores(_centerlines(tiled), _centerlines(whole), 1)
    assert scores.quality > 0.99
    degrees = lambda r: sorted(d for _, d in r.graph.degree())  # noqa: E731
    assert degrees(tiled) == degrees(whole)
    assert np.array_equal(tiled.layers["centerline"], whole.layers["centerline"])


def test_tiled_equals_untiled_on_pixel_blocks(crossing_mask):
    """The default run works on blocks of the scene's pixels; tiles of the block grid change nothing."""
    whole = geoseg.load_pipeline("mask_to_centerlines").run(crossing_mask)
    tiled = geoseg.load_pipeline("mask_to_centerlines", ["tile_px=96"]).run(crossing_mask)
    assert whole.geo.width < 600 and whole.tiles == 1 and tiled.tiles > 1
    assert (tiled.geo.width, tiled.geo.height) == (whole.geo.width, whole.geo.height)
    assert np.array_equal(tiled.layers["centerline"], whole.layers["centerline"])
    degrees = lambda r: sorted(d for _, d in r.graph.degree())  # noqa: E731
    assert degrees(tiled) == degrees(whole)


def test_every_step_runs_once_per_tile_of_its_pass(crossing_mask, monkeypatch):
    """Statistics levels split the chain into passes; no pass recomputes an earlier one."""
    import geoseg.pipeline.engine as engine

    calls: dict[str, int] = {}
    apply = engine._apply

    def counting(step, layers, ctx):
        calls[step.label] = calls.get(step.label, 0) + 1
        return apply(step, layers, ctx)

    monkeypatch.setattr(engine, "_apply", counting)
    result = geoseg.load_pipeline("mask_to_centerlines", [*NATIVE, "tile_px=256"]).run(crossing_mask)
    assert result.tiles == 9
    assert calls == {"threshold_mask": 9, "tensor_voting": 9, "non_max_suppression": 9, "road_network": 9, "connect_network": 1}


def test_passes_split_the_chain_at_each_statistics_level():
    from geoseg.pipeline.engine import _plan_passes, _split

    steps = geoseg.load_pipeline("road_centerlines", [f"model={SAMPLE_DATA / 'roads.mjcr.npz'}"]).steps
    raster, vectorizer, network = _split(steps)
    chain = [*raster, *network]
    plans = _plan_passes(chain, len(raster))
    labels = lambda idx: [chain[i].label for i in idx]  # noqa: E731
    # image statistics first (channel means, contrast), then one pass per level; the last vectorizes
    assert [labels(range(p.start, p.end)) for p in plans] == [[], ["mjcr_classify", "graph_cut"], ["tensor_voting"], ["non_max_suppression"]]
    assert [labels(p.measure) for p in plans] == [["mjcr_classify", "graph_cut"], ["tensor_voting", "connect_network"], ["non_max_suppression"], []]
    assert [p.final for p in plans] == [False, False, False, True]


def test_file_scratch_round_trips_layers_by_window(tmp_path):
    from geoseg.pipeline.scratch import FileScratch
    from geoseg.raster import GeoInfo

    geo = GeoInfo(width=300, height=200, crs=CRS.from_epsg(32633), transform=UTM_TRANSFORM, gsd_xy_m=(0.3, 0.3), georeferenced=True)
    rng = np.random.default_rng(0)
    layers = {"saliency": rng.random((200, 300)), "mask": rng.random((200, 300)) > 0.5, "probability": rng.random((2, 200, 300)).astype(np.float32)}
    scratch = FileScratch(geo, tmp_path)
    assert scratch.folder.parent == tmp_path and scratch.folder.name.startswith(".geoseg-tmp-")
    tiles = tile_grid(200, 300, 128, 16)
    for tile in tiles:
        for name, array in layers.items():
            scratch.write(name, array[..., tile.row_off : tile.row_off + tile.height, tile.col_off : tile.col_off + tile.width], tile)
    scratch.commit()
    view = scratch.view()
    for tile in tiles:
        rows = slice(tile.win_row_off, tile.win_row_off + tile.win_height)
        cols = slice(tile.win_col_off, tile.win_col_off + tile.win_width)
        for name, array in layers.items():
            got = view.read(name, tile)
            assert got.dtype == array.dtype and np.array_equal(got, array[..., rows, cols])
    scratch.close()
    assert not scratch.folder.exists()


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
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.block_shapes == [(512, 512)] and ds.crs == CRS.from_epsg(32633)
    agree = (outputs[None] == outputs[256]).mean()
    assert agree > 0.995  # graph cut per tile with a halo is an approximation


def test_tile_objects_slice_their_core():
    t = Tile(0, 100, 50, 20, 30, 90, 40, 40, 50)
    rows, cols = t.core_in_window
    assert (rows.start, rows.stop, cols.start, cols.stop) == (10, 30, 10, 40)


def test_file_scratch_of_a_scene_lives_beside_the_outputs_and_is_removed(crossing_mask, tmp_path, monkeypatch):
    import geoseg.pipeline.engine as engine
    from geoseg.pipeline.scene import process_scene

    folders = []

    def spy(*args, **kwargs):
        scratch = FileScratch(*args, **kwargs)
        folders.append(scratch.folder)
        return scratch

    monkeypatch.setattr(engine, "FileScratch", spy)
    pipe = geoseg.load_pipeline("mask_to_centerlines", [*NATIVE, "tile_px=256", "max_memory=16MB"])
    done = process_scene(pipe, crossing_mask, tmp_path / "out", stem="cross", fmt="gpkg")
    assert len(folders) == 1 and folders[0].parent == tmp_path / "out"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cross.gpkg"]
    assert done.tiles == 9


def test_tiles_line_up_with_the_internal_tiles_of_the_file(tmp_path):
    from geoseg.pipeline.engine import _aligned, open_source
    from geoseg.tiling import Region
    from tests.conftest import UTM_TRANSFORM, plus_mask, write_tif

    import zipfile

    local = write_tif(tmp_path / "t.tif", plus_mask(1000), CRS.from_epsg(32633), UTM_TRANSFORM, tiled=True, blockxsize=256, blockysize=256)
    striped_file = write_tif(tmp_path / "s.tif", plus_mask(1000), CRS.from_epsg(32633), UTM_TRANSFORM)
    with zipfile.ZipFile(tmp_path / "t.zip", "w") as archive:  # a virtual path, aligned as remote files are
        archive.write(local, "t.tif")
        archive.write(striped_file, "s.tif")
    tiled = open_source(f"/vsizip/{tmp_path}/t.zip/t.tif", 0.3)
    striped = open_source(f"/vsizip/{tmp_path}/t.zip/s.tif", 0.3)
    assert tiled.block == (256, 256) and striped.block is None
    assert open_source(local, 0.3).block is None  # a local file reads any window at the same cost: not aligned
    frame = Region(300, 130, 1000, 1000)  # an extent's frame, away from the file's corner
    core_px, phase = _aligned(tiled, 700, None, frame)
    assert (core_px, phase) == (512, (300, 130))
    cuts = {t.row_off + frame.row0 for t in tile_grid(700, 870, core_px, 20, phase=phase)} | {t.col_off + frame.col0 for t in tile_grid(700, 870, core_px, 20, phase=phase)}
    assert all(c % 256 == 0 for c in cuts - {frame.row0, frame.col0})  # every cut after the first is on a file tile
    assert _aligned(striped, 700, None, frame) == (700, None)
    assert _aligned(tiled, 700, 300, frame) == (700, None)  # a tile size the user forced is kept
