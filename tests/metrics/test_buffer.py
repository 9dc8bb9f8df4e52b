"""Tests of geoseg.metrics.buffer (Wiedemann completeness / correctness / quality)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import LineString, MultiLineString, Point

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.metrics import BufferScores, quality_from, raster_buffer_scores, vector_buffer_scores


def _hline(shape: tuple[int, int], row: int, c0: int, c1: int) -> np.ndarray:
    """Mask with a horizontal 1-px line on ``row`` from column ``c0`` to ``c1 - 1``."""
    m = np.zeros(shape, dtype=bool)
    m[row, c0:c1] = True
    return m


# ---------------------------------------------------------------- raster


def test_raster_shifted_line_within_slack_is_perfect() -> None:
    truth = _hline((30, 60), 10, 5, 45)
    pred = _hline((30, 60), 12, 5, 45)
    s = raster_buffer_scores(pred, truth, slack_px=2)
    assert (s.completeness, s.correctness, s.quality) == (1.0, 1.0, 1.0)
    assert s.reference_total == s.extraction_total == 40


def test_raster_shift_beyond_slack_matches_nothing() -> None:
    truth = _hline((30, 60), 10, 5, 45)
    pred = _hline((30, 60), 12, 5, 45)
    s = raster_buffer_scores(pred, truth, slack_px=1.5)
    assert (s.completeness, s.correctness, s.quality) == (0.0, 0.0, 0.0)


def test_raster_distance_is_euclidean() -> None:
    truth = np.zeros((5, 5), bool)
    pred = np.zeros((5, 5), bool)
    truth[2, 2] = True
    pred[3, 3] = True  # sqrt(2) away
    assert raster_buffer_scores(pred, truth, 1.41).correctness == 0.0
    assert raster_buffer_scores(pred, truth, 1.42).correctness == 1.0


def test_raster_missing_half_gives_completeness_half() -> None:
    truth = _hline((20, 60), 10, 0, 40)
    pred = _hline((20, 60), 10, 0, 20)
    s = raster_buffer_scores(pred, truth, slack_px=0)
    assert s.completeness == 0.5
    assert s.correctness == 1.0
    assert s.quality == pytest.approx(0.5)


def test_raster_spurious_segment_lowers_correctness() -> None:
    truth = _hline((40, 60), 5, 10, 50)  # 40 px
    pred = truth.copy()
    pred[15:35, 30] = True  # 20 px, >= 10 px from the truth row
    s = raster_buffer_scores(pred, truth, slack_px=3)
    assert s.completeness == 1.0
    assert s.correctness == pytest.approx(40 / 60)
    assert s.quality == pytest.approx(40 / 60)
    assert s.extraction_matched == 40 and s.extraction_total == 60


def test_raster_quality_formula() -> None:
    truth = _hline((20, 100), 10, 0, 80)
    pred = _hline((20, 100), 10, 40, 100)  # 40 of 80 truth found; 40 of 60 pred correct
    s = raster_buffer_scores(pred, truth, slack_px=0)
    comp, corr = 0.5, 40 / 60
    assert s.completeness == pytest.approx(comp)
    assert s.correctness == pytest.approx(corr)
    assert s.quality == pytest.approx(comp * corr / (comp + corr - comp * corr))
    assert s.quality == pytest.approx(40 / 100)  # TP / (TP + FP + FN) for exact matching


def test_raster_empty_inputs() -> None:
    empty = np.zeros((10, 10), bool)
    line = _hline((10, 10), 3, 0, 10)
    both = raster_buffer_scores(empty, empty, 2)
    assert (both.completeness, both.correctness, both.quality) == (1.0, 1.0, 1.0)
    no_pred = raster_buffer_scores(empty, line, 2)
    assert no_pred.completeness == 0.0 and math.isnan(no_pred.correctness)
    assert no_pred.quality == 0.0
    no_truth = raster_buffer_scores(line, empty, 2)
    assert no_truth.correctness == 0.0 and math.isnan(no_truth.completeness)
    assert no_truth.quality == 0.0


def test_raster_bad_inputs() -> None:
    with pytest.raises(InputMismatchError):
        raster_buffer_scores(np.zeros((4, 4)), np.zeros((4, 5)), 1)
    with pytest.raises(ConfigError):
        raster_buffer_scores(np.zeros((4, 4)), np.zeros((4, 4)), -1)


# ---------------------------------------------------------------- vector


def test_vector_shifted_line_within_buffer_is_perfect() -> None:
    truth = [LineString([(0, 0), (100, 0)])]
    pred = [LineString([(0, 1.5), (100, 1.5)])]
    s = vector_buffer_scores(pred, truth, buffer=2.0)
    assert s.completeness == pytest.approx(1.0)
    assert s.correctness == pytest.approx(1.0)
    assert s.reference_total == pytest.approx(100.0)


def test_vector_missing_half() -> None:
    truth = [LineString([(0, 0), (100, 0)])]
    pred = [LineString([(0, 0), (50, 0)])]
    s = vector_buffer_scores(pred, truth, buffer=2.0)
    # the truth within 2 m of the prediction runs from 0 to 52 (round cap)
    assert s.completeness == pytest.approx(0.52)
    assert s.correctness == pytest.approx(1.0)


def test_vector_spurious_segment_and_dissolve() -> None:
    road = LineString([(0, 0), (100, 0)])
    truth = [road, road]  # drawn twice, counted once
    pred = MultiLineString([[(0, 0.5), (100, 0.5)], [(0, 50), (50, 50)]])
    s = vector_buffer_scores([pred, None], truth, buffer=2.0)
    assert s.reference_total == pytest.approx(100.0)
    assert s.correctness == pytest.approx(100 / 150)
    assert s.completeness == pytest.approx(1.0)
    assert s.quality == pytest.approx(100 / 150)


def test_vector_empty_inputs_and_errors() -> None:
    line = [LineString([(0, 0), (10, 0)])]
    assert vector_buffer_scores([], [], 1.0).quality == 1.0
    s = vector_buffer_scores([], line, 1.0)
    assert s.completeness == 0.0 and math.isnan(s.correctness) and s.quality == 0.0
    with pytest.raises(InputMismatchError):
        vector_buffer_scores([Point(0, 0)], line, 1.0)
    with pytest.raises(ConfigError):
        vector_buffer_scores(line, line, float("nan"))


def test_scores_pool_and_to_dict() -> None:
    s = BufferScores.from_amounts(10, 5, 20, 20)
    d = s.to_dict()
    assert d["completeness"] == 0.5 and d["correctness"] == 1.0
    assert set(d) == {
        "completeness", "correctness", "quality", "reference_total", "reference_matched",
        "extraction_total", "extraction_matched",
    }
    assert quality_from(0.0, float("nan")) == 0.0
    assert quality_from(1.0, 1.0) == 1.0
