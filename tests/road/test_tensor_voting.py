"""Tests of geoseg.road.tensor_voting: steerable FFT voting against the direct reference."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import line

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.road.tensor_voting import tensor_voting, tensor_voting_direct


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference of orientations modulo π, in radians."""
    return np.abs((a - b + np.pi / 2) % np.pi - np.pi / 2)


def _scene() -> np.ndarray:
    """48×48 weights: two segments of different weights and a half-circle arc."""
    img = np.zeros((48, 48))
    rr, cc = line(5, 3, 40, 20)
    img[rr, cc] = 1.0
    rr, cc = line(10, 30, 12, 45)
    img[rr, cc] = 0.7
    t = np.linspace(0, np.pi, 60)
    img[(30 + 10 * np.sin(t)).astype(int), (25 + 12 * np.cos(t)).astype(int)] = 0.5
    return img


def _band(shape: tuple[int, int], angle_deg: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Band of ``width`` px through the image centre; returns the mask and signed offset across."""
    rows, cols = np.indices(shape)
    x = cols + 0.5 - shape[1] / 2
    y = rows + 0.5 - shape[0] / 2
    th = np.radians(angle_deg)
    across = -x * np.sin(th) + y * np.cos(th)
    return np.abs(across) <= width / 2, across


@pytest.mark.parametrize("boundary", ["reflect", "zero"])
@pytest.mark.parametrize("given_orientation", [False, True])
@pytest.mark.parametrize("sigma", [3.0, 5.0])
def test_fast_matches_direct(sigma: float, given_orientation: bool, boundary: str) -> None:
    img = _scene()
    ori = np.random.default_rng(0).uniform(-np.pi, np.pi, img.shape) if given_orientation else None
    fast = tensor_voting(img, sigma, orientation=ori, boundary=boundary)
    ref = tensor_voting_direct(img, sigma, orientation=ori, boundary=boundary)
    significant = ref.saliency > 0.01 * ref.saliency.max()
    assert significant.sum() > 500
    rel = np.abs(fast.saliency - ref.saliency)[significant] / ref.saliency[significant]
    assert rel.max() < 1e-4
    assert np.degrees(_angle_diff(fast.orientation, ref.orientation)[significant]).max() < 0.05
    assert np.abs(fast.ballness - ref.ballness).max() < 1e-5 * ref.saliency.max()
    assert fast.saliency.dtype == np.float32 and fast.saliency.shape == img.shape


@pytest.mark.parametrize("n_angular", [1, 2, 3, 6])
def test_fast_matches_direct_for_every_angular_exponent(n_angular: int) -> None:
    """Each n uses another set of kernel orders (negative ones from their conjugates)."""
    img = _scene()
    fast = tensor_voting(img, 4.0, n_angular=n_angular)
    ref = tensor_voting_direct(img, 4.0, n_angular=n_angular)
    significant = ref.saliency > 0.01 * ref.saliency.max()
    assert np.abs(fast.saliency - ref.saliency)[significant].max() < 1e-4 * ref.saliency.max()
    assert np.degrees(_angle_diff(fast.orientation, ref.orientation)[significant]).max() < 0.05


def test_blocked_equals_whole_image() -> None:
    img = (np.random.default_rng(1).random((150, 130)) > 0.9).astype(float)
    whole = tensor_voting(img, 4.0)
    blocked = tensor_voting(img, 4.0, block_px=48)
    np.testing.assert_allclose(blocked.saliency, whole.saliency, atol=1e-5 * whole.saliency.max())
    np.testing.assert_allclose(blocked.ballness, whole.ballness, atol=1e-5 * whole.saliency.max())


@pytest.mark.parametrize("block_px", [1024, 48])
def test_a_halo_of_context_is_not_voted_on_and_changes_nothing_beyond_the_radius(block_px: int) -> None:
    """A tile's halo sides (context_px >= radius) are not padded; inside, the result is the padded one."""
    img = (np.random.default_rng(2).random((150, 130)) > 0.9).astype(float)
    sigma, radius = 4.0, 12  # radius = floor(3 sigma)
    padded = tensor_voting(img, sigma, block_px=block_px)
    context = (radius, 0, 20, radius + 5)  # top and both sides are halo; the bottom is the scene's edge
    tile = tensor_voting(img, sigma, block_px=block_px, context_px=context)
    inner = (slice(radius, None), slice(radius, -radius))
    np.testing.assert_allclose(tile.saliency[inner], padded.saliency[inner], atol=1e-5 * padded.saliency.max())
    np.testing.assert_allclose(tile.ballness[inner], padded.ballness[inner], atol=1e-5 * padded.saliency.max())
    assert tile.saliency[:radius].sum() < 0.5 * padded.saliency[:radius].sum()  # the halo band holds the voters' own votes only
    short = tensor_voting(img, sigma, block_px=block_px, context_px=(radius - 1, 0, 0, 0))  # less than the radius: padded as before
    np.testing.assert_allclose(short.saliency, padded.saliency, atol=1e-5 * padded.saliency.max())


def test_unit_line_saliency_is_one() -> None:
    img = np.zeros((40, 80))
    img[20, :] = 1.0
    res = tensor_voting(img, 6.0, boundary="reflect")
    # Exact beyond 2·truncate·σ from the ends of the mirrored line; the mirror keeps it
    # within 2 % up to the border.
    np.testing.assert_allclose(res.saliency[20, 36:44], 1.0, rtol=1e-4)
    np.testing.assert_allclose(res.saliency[20], 1.0, rtol=0.02)
    np.testing.assert_allclose(res.ballness[20], 0.0, atol=1e-4)
    np.testing.assert_allclose(res.orientation[20], 0.0, atol=1e-3)


@pytest.mark.parametrize("angle", [0.0, 30.0, 60.0, 90.0, -45.0])
def test_orientation_follows_band(angle: float) -> None:
    mask, across = _band((96, 96), angle, 11)
    res = tensor_voting(mask, 10.0)
    rows, cols = np.indices(mask.shape)
    inner = (np.abs(across) <= 5) & (np.hypot(rows - 48, cols - 48) < 25)
    err = np.degrees(_angle_diff(res.orientation[inner], np.radians(angle)))
    assert err.max() < 3.0
    # The saliency peaks on the axis, not at the edges of the band.
    centre = res.saliency[inner & (np.abs(across) <= 0.75)].mean()
    edge = res.saliency[inner & (np.abs(across) >= 4.0)].mean()
    assert centre > 1.1 * edge


def test_votes_fill_a_gap() -> None:
    mask, across = _band((64, 96), 0.0, 5)
    mask[:, 45:51] = False
    res = tensor_voting(mask, 10.0)
    on_axis = res.saliency[32, :]
    assert on_axis[48] > 0.5 * on_axis[20]
    assert abs(res.orientation[32, 48]) < np.radians(1.0)


def test_invalid_inputs() -> None:
    with pytest.raises(InputMismatchError):
        tensor_voting(np.zeros((4, 4, 3)), 2.0)
    with pytest.raises(InputMismatchError):
        tensor_voting(-np.ones((8, 8)), 2.0)
    with pytest.raises(InputMismatchError):
        tensor_voting(np.ones((8, 8)), 2.0, orientation=np.zeros((8, 7)))
    with pytest.raises(ConfigError):
        tensor_voting(np.ones((8, 8)), 0.0)
    with pytest.raises(ConfigError):
        tensor_voting(np.ones((8, 8)), 2.0, boundary="wrap")


def test_reflect_mirrors_given_orientations() -> None:
    # "reflect" must equal zero-boundary voting on the explicitly mirrored scene, in which the
    # mirror image of a line at +30° runs at -30°.
    sigma, pad = 3.0, 9  # pad = floor(truncate * sigma)
    img = np.zeros((40, 40))
    rr, cc = line(20, 0, 27, 13)
    img[rr, cc] = 1.0
    ori = np.full(img.shape, np.radians(30.0))
    mirrored = np.pad(img, ((0, 0), (pad, 0)), mode="reflect")
    mirrored_ori = np.pad(ori, ((0, 0), (pad, 0)), mode="reflect")
    mirrored_ori[:, :pad] *= -1
    truth = tensor_voting(mirrored, sigma, orientation=mirrored_ori, boundary="zero")
    res = tensor_voting(img, sigma, orientation=ori, boundary="reflect")
    scale = truth.saliency.max()
    np.testing.assert_allclose(res.saliency, truth.saliency[:, pad:], atol=1e-5 * scale)
    np.testing.assert_allclose(res.ballness, truth.ballness[:, pad:], atol=1e-5 * scale)
