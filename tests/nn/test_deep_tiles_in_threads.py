"""The deep chain's tiles run in threads (issue 18): one tile at a time in the network, the other steps beside it."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import shapely

import geoseg
from geoseg.pipeline import engine
from geoseg.steps.deep import NNClassify

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def test_deep_tiles_run_in_threads_one_at_a_time_in_the_network(tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    running, most = 0, 0
    count = threading.Lock()
    apply = NNClassify.apply

    def watched(self, layers, ctx):
        nonlocal running, most
        with count:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)  # a window in which a second tile would enter if nothing held it back
            return apply(self, layers, ctx)
        finally:
            with count:
                running -= 1

    monkeypatch.setattr(NNClassify, "apply", watched)
    settings = [f"model={tiny_model}", "nn_classify.tta=false", "tile_px=192"]

    def run(cores: int) -> geoseg.RunResult:
        monkeypatch.setattr(engine, "default_workers", lambda: cores)
        return geoseg.load_pipeline("deep_road_centerlines", settings).run(SAMPLE / "scene_b.tif")

    with caplog.at_level(logging.DEBUG, logger="geoseg"):
        threaded = run(2)
    network_pass = next(line for line in caplog.text.splitlines() if "'nn_classify', 'graph_cut'" in line)
    assert "2 at a time" in network_pass  # the pass that runs the network ran its tiles in threads
    assert most == 1  # ... and never two tiles in the network at once
    serial = run(1)
    assert threaded.graph.number_of_edges() == serial.graph.number_of_edges() >= 1
    assert shapely.equals(shapely.union_all(threaded.lines.geometry), shapely.union_all(serial.lines.geometry))
    for name, layer in serial.layers.items():
        if isinstance(layer, np.ndarray):
            np.testing.assert_array_equal(threaded.layers[name], layer, err_msg=name)
