"""Statistics measured behind the next tile (issue 18): a pass whose tiles run one at a time
(a step that uses the cores itself) measures each tile's statistics in a thread of their own
while the next tile runs, with the same statistics, layers and warnings as one thread."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np
import pytest
from rasterio.crs import CRS

import geoseg.pipeline.engine as engine
from geoseg.pipeline.engine import MemorySource, execute
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo, Raster
from tests.conftest import UTM_TRANSFORM


class _OneAtATime(Step):
    """A step that may not run on two tiles at once (as nn_classify), slow enough to overlap."""

    type_name = "test_one_at_a_time"
    takes = ("image",)
    gives = ("probability",)
    concurrent_tiles = False
    ran: ClassVar[list[tuple[float, float]]] = []

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        start = time.perf_counter()
        time.sleep(0.02)
        self.ran.append((start, time.perf_counter()))
        return {"probability": layers["image"][0].astype(np.float32) / 255}


class _Total(Step):
    """Gives a layer holding the scene's total probability, measured tile by tile (a warning on one tile)."""

    type_name = "test_total"
    takes = ("probability",)
    gives = ("saliency",)
    stats_inputs = ("probability",)
    measured: ClassVar[list[tuple[str, float, float]]] = []

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> float:
        start = time.perf_counter()
        rows, cols = ctx.core
        total = float(layers["probability"][rows, cols].sum(dtype=np.float64))
        if rows.start == 0 and cols.start == 0:
            ctx.warnings.append("the first tile was measured")
        time.sleep(0.02)
        self.measured.append((threading.current_thread().name, start, time.perf_counter()))
        return total

    def fit(self, partials: list[Any]) -> Step:
        return self.with_fitted(total=sum(partials))

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"saliency": np.full(layers["probability"].shape, self.fitted("total"), dtype=np.float32)}


def _run(cores: int, monkeypatch: pytest.MonkeyPatch) -> engine.RunResult:
    monkeypatch.setattr(engine, "default_workers", lambda: cores)
    _OneAtATime.ran.clear()
    _Total.measured.clear()
    image = (np.random.default_rng(0).random((1, 200, 200)) * 255).astype(np.uint8)
    geo = GeoInfo(200, 200, CRS.from_epsg(32633), UTM_TRANSFORM, (0.5, 0.5), True)
    return execute([_OneAtATime(), _Total()], MemorySource(Raster(image, geo, np.ones((200, 200), bool))), tile_px=64)


def test_statistics_overlap_the_next_tile_and_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    serial = _run(1, monkeypatch)
    assert {name for name, _, _ in _Total.measured} == {threading.main_thread().name}
    behind = _run(2, monkeypatch)
    threads = {name for name, _, _ in _Total.measured}
    assert len(threads) == 1 and threads.pop().startswith("geoseg-statistics")
    steps = sorted(_OneAtATime.ran)
    assert len(steps) == 16  # 4 x 4 tiles in the measuring pass (the next pass reads its layer back)
    # some tile's statistics were measured while the next tile's step ran
    assert any(m0 < s1 and s0 < m1 for _, m0, m1 in _Total.measured for s0, s1 in steps)
    np.testing.assert_array_equal(behind.layers["saliency"], serial.layers["saliency"])
    image_total = behind.layers["probability"].sum(dtype=np.float64)
    assert behind.layers["saliency"][0, 0] == pytest.approx(image_total, rel=1e-6)
    assert behind.warnings == serial.warnings == ["the first tile was measured"]


def test_a_failed_measurement_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: _Total, layers: dict[str, Any], ctx: StepContext) -> float:
        raise ValueError("cannot measure this tile")

    monkeypatch.setattr(_Total, "tile_statistics", fail)
    with pytest.raises(ValueError, match="cannot measure this tile"):
        _run(2, monkeypatch)
