"""Tiles in threads (issue 18): a scene's tiles run on every core and give what one thread gives."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely

import geoseg
from geoseg.pipeline import engine
from tests.conftest import SAMPLE_DATA, write_tif


def _run(pipeline: str, settings: list[str], scene: str | Path, cores: int, monkeypatch: pytest.MonkeyPatch) -> geoseg.RunResult:
    monkeypatch.setattr(engine, "default_workers", lambda: cores)
    return geoseg.load_pipeline(pipeline, settings).run(SAMPLE_DATA / scene)


@pytest.mark.parametrize(
    ("pipeline", "settings", "scene"),
    [
        ("mask_to_centerlines", ["work_road_px=null", "tile_px=256"], "scene_a_mask.tif"),
        ("road_centerlines", [f"model={SAMPLE_DATA / 'roads.mjcr.npz'}", "tile_px=192"], "scene_b.tif"),
    ],
)
def test_tiles_in_threads_give_the_single_thread_result(pipeline, settings, scene, monkeypatch, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="geoseg"):
        threaded = _run(pipeline, settings, scene, 2, monkeypatch)
    assert "2 at a time" in caplog.text  # the tiles did run in threads
    serial = _run(pipeline, settings, scene, 1, monkeypatch)
    assert threaded.graph.number_of_edges() == serial.graph.number_of_edges() >= 3
    assert shapely.equals(shapely.union_all(threaded.lines.geometry), shapely.union_all(serial.lines.geometry))
    for name, layer in serial.layers.items():
        if isinstance(layer, np.ndarray):
            np.testing.assert_array_equal(threaded.layers[name], layer, err_msg=name)


def test_results_come_in_tile_order_and_a_failure_stops_the_rest() -> None:
    tiles = list(range(12))
    started: list[int] = []
    lock = threading.Lock()

    def work(tile: int) -> int:
        with lock:
            started.append(tile)
        time.sleep(0.02 if tile % 2 == 0 else 0.0)  # later tiles finish first
        if tile == 3:
            raise ValueError("tile 3 is broken")
        return tile * 10

    results = engine._map_tiles(work, tiles[:3], None, concurrent=2)
    assert [(t, r) for t, r in results] == [(0, 0), (1, 10), (2, 20)]
    with pytest.raises(ValueError, match="tile 3 is broken"):
        list(engine._map_tiles(work, tiles, None, concurrent=2))
    assert max(started[3:]) <= 6  # at most 4 tiles in flight: those queued behind the failure never started


def test_a_scene_that_fits_one_tile_is_cut_for_the_cores(tmp_path, monkeypatch, caplog) -> None:
    """A 1024² mask (scene A's mask mirrored 2 x 2) fits one tile, yet runs as tiles on both cores; the network is the same."""
    with rasterio.open(SAMPLE_DATA / "scene_a_mask.tif") as src:
        mask, crs, transform = src.read(1), src.crs, src.transform
    top = np.concatenate([mask, mask[:, ::-1]], axis=1)
    path = write_tif(tmp_path / "mosaic.tif", np.concatenate([top, top[::-1]], axis=0)[None], crs, transform)
    with caplog.at_level(logging.DEBUG, logger="geoseg"):
        cut = _run("mask_to_centerlines", ["work_road_px=null"], path, 2, monkeypatch)
    assert caplog.text.count("4 tile(s) of 512 px") == caplog.text.count(": pass ") == 4
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="geoseg"):
        whole = _run("mask_to_centerlines", ["work_road_px=null"], path, 1, monkeypatch)
    assert caplog.text.count(": 1 tile(s) of") == caplog.text.count(": pass ") == 4  # what one core gets: one tile per pass
    a, b = shapely.union_all(cut.lines.geometry), shapely.union_all(whole.lines.geometry)
    assert a.length == pytest.approx(b.length, rel=0.01) and b.length > 500
    assert a.intersection(b.buffer(0.3)).length > 0.99 * a.length  # within one pixel everywhere


def test_this_thread_does_its_waiting_work_once_while_the_first_tiles_run() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[bool] = []

    def work(tile: int) -> int:
        started.set()
        release.wait(5)
        return tile

    def while_waiting() -> None:
        calls.append(started.wait(5) and not release.is_set())  # a tile is under way and none has finished
        release.set()

    assert list(engine._map_tiles(work, [1, 2, 3], None, concurrent=2, while_waiting=while_waiting)) == [(1, 1), (2, 2), (3, 3)]
    assert calls == [True]


@pytest.mark.parametrize(("pipeline", "settings", "scene", "imports"), [
    ("mask_to_centerlines", ["work_road_px=null", "tile_px=256"], "scene_a_mask.tif", True),  # ends in a network
    ("road_segmentation", [f"model={SAMPLE_DATA / 'roads.mjcr.npz'}", "tile_px=192"], "scene_b.tif", False),  # rasters only
])  # fmt: skip
def test_a_run_ending_in_vectors_imports_their_libraries_while_its_tiles_run(pipeline, settings, scene, imports, monkeypatch, caplog) -> None:
    waits: list[str] = []
    monkeypatch.setattr(engine, "import_vector_libraries", lambda: waits.append(threading.current_thread().name))
    with caplog.at_level(logging.DEBUG, logger="geoseg"):
        _run(pipeline, settings, scene, 2, monkeypatch)
    assert "2 at a time" in caplog.text
    assert waits[:1] == ([threading.main_thread().name] if imports else [])
