"""Tests of geoseg.road.nms on tensor-voting saliency of synthetic road bands."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.road.centerlines import distance_to_background
from geoseg.road.nms import non_max_suppression, ridge_mask
from geoseg.road.tensor_voting import tensor_voting

SIZE = 129  # odd: the band axis runs through pixel centres


def _band(angle_deg: float, width: float, gap: float = 0.0) -> tuple[np.ndarray, ...]:
    """Band through the image centre; returns mask, offset across and along the axis."""
    rows, cols = np.indices((SIZE, SIZE))
    x = cols + 0.5 - SIZE / 2
    y = rows + 0.5 - SIZE / 2
    th = np.radians(angle_deg)
    along = x * np.cos(th) + y * np.sin(th)
    across = -x * np.sin(th) + y * np.cos(th)
    mask = (np.abs(across) <= width / 2) & (np.abs(along) >= gap / 2)
    return mask, across, along


def _no_2x2(mask: np.ndarray) -> bool:
    return not np.any(mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:] & mask[1:, 1:])


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 90.0, -60.0])
def test_centerline_of_band(angle: float) -> None:
    mask, across, along = _band(angle, 11)
    res = tensor_voting(mask, 10.0)
    centre = non_max_suppression(res.saliency, res.orientation)
    assert centre.dtype == bool and _no_2x2(centre)
    # Away from the image border (> 2σ), where the band meets its mirror image.
    inner = np.hypot(across, along) < 40
    dist = np.abs(across[centre & inner])
    assert dist.mean() < 1.0
    assert dist.max() <= 1.5
    assert label(centre & inner, connectivity=2).max() == 1
    # It spans the inner part of the axis: about one pixel per pixel of length, or per
    # diagonal step.
    step = max(abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle))))
    assert centre[inner].sum() >= 0.9 * 80 * step


def test_gap_is_bridged() -> None:
    mask, across, along = _band(20.0, 11, gap=6.0)
    assert not mask[np.abs(along) < 2.5].any()
    res = tensor_voting(mask, 10.0)
    centre = non_max_suppression(res.saliency, res.orientation)
    inner = np.hypot(across, along) < 40
    in_gap = centre & (np.abs(along) < 3)
    assert in_gap.sum() >= 4
    assert np.abs(across[in_gap]).max() <= 1.5
    assert label(centre & inner, connectivity=2).max() == 1


def test_gap_without_hysteresis_fill_is_thresholded() -> None:
    # A high threshold alone drops the weaker gap; the same with low_threshold keeps it.
    mask, across, along = _band(0.0, 11, gap=12.0)
    res = tensor_voting(mask, 10.0)
    inner = np.hypot(across, along) < 40
    strict = non_max_suppression(res.saliency, res.orientation, threshold=0.9, low_threshold=None)
    hyst = non_max_suppression(res.saliency, res.orientation, threshold=0.9, low_threshold=0.3)
    assert not strict[np.abs(along) < 2].any()
    assert hyst[np.abs(along) < 2].any()
    assert label(hyst & inner, connectivity=2).max() == 1


def test_ridge_plateau_keeps_one_pixel() -> None:
    sal = np.zeros((9, 9))
    sal[:, 3] = sal[:, 6] = 0.5
    sal[:, 4] = sal[:, 5] = 1.0  # a two-pixel-wide vertical ridge
    ridge = ridge_mask(sal, np.full(sal.shape, np.pi / 2))
    assert ridge[:, 4].all() != ridge[:, 5].all()
    assert ridge.sum() == 9


def test_absolute_threshold() -> None:
    mask, _, _ = _band(0.0, 5)
    res = tensor_voting(mask, 6.0)
    peak = float(res.saliency.max())
    assert not non_max_suppression(res.saliency, res.orientation, threshold=1.01 * peak, low_threshold=None, relative=False).any()
    assert non_max_suppression(res.saliency, res.orientation, threshold=0.5 * peak, relative=False, low_threshold=0.1).any()


def test_empty_and_invalid() -> None:
    zeros = np.zeros((16, 16))
    assert not non_max_suppression(zeros, zeros).any()
    with pytest.raises(InputMismatchError):
        non_max_suppression(zeros, np.zeros((16, 15)))
    with pytest.raises(ConfigError):
        non_max_suppression(zeros, zeros, threshold=0.1, low_threshold=0.2)


def test_even_width_vertical_band_keeps_one_continuous_line():
    """A 12-px band has a 2-px saliency plateau; orientations of ±90° must not break the tie rule."""
    from geoseg.road.centerlines import centrality_weights

    band = np.zeros((120, 120), dtype=np.float32)
    band[:, 54:66] = 1.0
    for image in (band, band.T):
        tv = tensor_voting(centrality_weights(image, 11.0), 4.4)
        thin = non_max_suppression(tv.saliency, tv.orientation, threshold=0.1, low_threshold=0.05)
        along = np.unique(np.nonzero(thin)[0 if image is band else 1])
        assert along.size == 120


def test_distance_to_background_equals_the_distance_transform() -> None:
    """Random masks of every density and size, edges included (the mask continues beyond them)."""
    rng = np.random.default_rng(3)
    for _ in range(100):
        mask = rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) < rng.random()
        pixels = np.nonzero(mask)
        expected = ndimage.distance_transform_edt(np.pad(mask, 1, mode="edge"))[1:-1, 1:-1][pixels]
        np.testing.assert_array_equal(distance_to_background(mask, pixels), expected)
