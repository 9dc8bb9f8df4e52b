"""Tests of geoseg.road.features."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from geoseg.errors import InputMismatchError
from geoseg.road.features import (
    base_channels,
    feature_description,
    feature_groups,
    multiscale_features,
    window_sides,
)


def _image(seed: int = 0, shape: tuple[int, int] = (20, 24)) -> np.ndarray:
    return np.random.default_rng(seed).random((3, *shape)).astype(np.float32)


def test_window_sides_are_odd() -> None:
    assert window_sides([1, 4.76, 11.9, 23.8, 2]) == [1, 5, 13, 25, 3]
    with pytest.raises(InputMismatchError):
        window_sides([0])


def test_base_channels_definitions() -> None:
    img = _image()
    ch, names = base_channels(img)
    assert names == ["b0", "b1", "b2", "brightness", "chroma", "exg", "gradmag"]
    r, g, b = img
    np.testing.assert_allclose(ch[3], img.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ch[4], img.max(0) - img.min(0), rtol=1e-6)
    np.testing.assert_allclose(ch[5], 2 * g - r - b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ch[6], ndimage.gaussian_gradient_magnitude(img.mean(0), 1.0), rtol=1e-5)
    _, names1 = base_channels(img[:1])
    assert names1 == ["b0", "gradmag"]


def test_multiscale_features_match_explicit_window_stats() -> None:
    img = _image(1)
    F, names = multiscale_features(img, [1, 5])
    assert F.dtype == np.float32 and F.shape == (7 + 14, 20, 24) and len(names) == F.shape[0]
    i = names.index("mean:b1@5px")
    j = names.index("std:b1@5px")
    # Interior pixel: explicit 5x5 window (channels are centred, which shifts the mean only).
    win = img[1, 8:13, 10:15]
    assert F[i, 10, 12] == pytest.approx(win.mean() - img[1].mean(), abs=1e-5)
    assert F[j, 10, 12] == pytest.approx(win.std(), abs=1e-4)
    # Window of side 1: the mean is the (centred) channel itself and there is no std.
    assert "std:b0@1px" not in names
    np.testing.assert_allclose(F[names.index("mean:b0@1px")], img[0] - img[0].mean(), atol=1e-6)


def test_a_crop_centred_on_the_scene_means_matches_the_whole_scene() -> None:
    """Tiled processing: a tile given the scene's channel means has the scene's features."""
    img = _image(1)
    full, _ = multiscale_features(img, [1, 5])
    chans, _ = base_channels(img)
    crop, _ = multiscale_features(img[:, :, 8:], [1, 5], channel_means=chans.reshape(chans.shape[0], -1).mean(axis=1))
    # 8 px from the cut: beyond the 5-px window and the gradient filter's reach.
    np.testing.assert_allclose(crop[:, :, 8:], full[:, :, 16:], atol=1e-4)


def test_feature_groups_and_description_are_consistent() -> None:
    img = _image(2)
    F, names = multiscale_features(img, [2.0, 5.0, 10.0])
    groups = feature_groups(names)
    assert [len(g) for g in groups] == [14, 14, 14]
    assert sorted(sum(groups, [])) == list(range(F.shape[0]))
    desc = feature_description(3, [2.0, 5.0, 10.0])
    assert desc["n_features"] == F.shape[0] and desc["windows_px"] == [3, 5, 11]
    assert json.loads(json.dumps(desc)) == desc


def test_rejects_integer_images() -> None:
    with pytest.raises(InputMismatchError):
        multiscale_features(np.zeros((3, 4, 4), np.uint8), [3])
