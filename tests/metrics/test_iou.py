"""Tests of geoseg.metrics.iou (mask scores and boundary F-score)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.metrics import binary_scores, boundary_f_score, mask_boundary


def _square(shape: tuple[int, int], r0: int, c0: int, size: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[r0 : r0 + size, c0 : c0 + size] = True
    return m


def test_binary_scores_known_counts() -> None:
    truth = np.zeros((4, 5), bool)
    pred = np.zeros((4, 5), bool)
    truth[0, :4] = True  # 4 px
    pred[0, 2:5] = True  # 3 px, 2 shared
    s = binary_scores(pred, truth)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (2.0, 1.0, 2.0, 15.0)
    assert s["iou"] == pytest.approx(2 / 5)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 4)
    assert s["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))


def test_binary_scores_empty_masks() -> None:
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    both = binary_scores(empty, empty)
    assert both["iou"] == both["precision"] == both["recall"] == both["f1"] == 1.0
    no_pred = binary_scores(empty, full)
    assert no_pred["iou"] == 0.0 and no_pred["recall"] == 0.0 and math.isnan(no_pred["precision"])
    no_truth = binary_scores(full, empty)
    assert no_truth["f1"] == 0.0 and no_truth["precision"] == 0.0 and math.isnan(no_truth["recall"])


def test_binary_scores_shape_mismatch() -> None:
    with pytest.raises(InputMismatchError):
        binary_scores(np.zeros((3, 3)), np.zeros(9))


def test_mask_boundary_ignores_image_frame() -> None:
    m = _square((10, 10), 2, 2, 4)
    b = mask_boundary(m)
    assert b.sum() == 12  # perimeter ring of a 4x4 square
    assert not b[3:5, 3:5].any()
    assert not mask_boundary(np.ones((5, 5), bool)).any()


def test_boundary_f_score_shift_and_tolerance() -> None:
    truth = _square((20, 20), 5, 5, 8)
    pred = _square((20, 20), 6, 5, 8)  # shifted down by one row
    assert boundary_f_score(truth, truth, 0) == 1.0
    assert boundary_f_score(pred, truth, 1) == 1.0
    f0 = boundary_f_score(pred, truth, 0)
    # boundary rings of 28 px; the two vertical sides overlap in 7 px each (14 of 28)
    assert f0 == pytest.approx(14 / 28)


def test_boundary_f_score_empty_and_errors() -> None:
    empty = np.zeros((8, 8), bool)
    sq = _square((8, 8), 2, 2, 3)
    assert boundary_f_score(empty, empty, 1) == 1.0
    assert boundary_f_score(empty, sq, 1) == 0.0
    with pytest.raises(ConfigError):
        boundary_f_score(sq, sq, -0.5)
