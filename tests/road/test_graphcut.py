"""Tests of geoseg.road.graphcut."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from geoseg.pipeline.step import StepContext
from geoseg.road.graphcut import graph_cut, pairwise_weights
from geoseg.steps.classify import GraphCut


def _energy(labels: np.ndarray, prob: np.ndarray, pairs, eps: float = 1e-4) -> float:
    p = np.clip(prob, eps, 1 - eps)
    e = np.where(labels, -np.log(p), -np.log1p(-p)).sum()
    H, W = labels.shape
    for (dr, dc), w in pairs:
        for r, c in itertools.product(range(H), range(W)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W and labels[r, c] != labels[rr, cc]:
                e += w[r, c]
    return float(e)


def brute_force_min_cut_energy(prob: np.ndarray, pairs) -> float:
    """Minimum of the energy over all 2^n labellings."""
    n = prob.size
    return min(
        _energy(np.array(bits, bool).reshape(prob.shape), prob, pairs)
        for bits in itertools.product([False, True], repeat=n)
    )


@pytest.mark.parametrize("shape", [(3, 3), (3, 4)])
@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_cut_is_exact_minimum(shape, connectivity, seed) -> None:
    rng = np.random.default_rng(seed)
    prob = rng.random(shape)
    image = rng.random((3, *shape))
    kw = dict(smoothness=float(rng.uniform(0.3, 2.0)), connectivity=connectivity)
    pairs = pairwise_weights(shape, image, **kw)
    labels = graph_cut(prob, image, **kw)
    assert labels.dtype == bool and labels.shape == shape
    assert _energy(labels, prob, pairs) == pytest.approx(brute_force_min_cut_energy(prob, pairs), abs=1e-9)


def test_label_convention_without_smoothing() -> None:
    prob = np.array([[0.9, 0.1], [0.6, 0.4]])
    np.testing.assert_array_equal(graph_cut(prob, smoothness=0.0), prob > 0.5)


def test_pairwise_weights_contrast_and_borders() -> None:
    img = np.zeros((1, 2, 3))
    img[0, :, 2] = 1.0  # vertical edge between columns 1 and 2
    pairs = dict(pairwise_weights((2, 3), img, smoothness=2.0, contrast_beta=1.0, connectivity=8))
    right = pairs[(0, 1)]
    assert right[0, 0] == pytest.approx(2.0) and right[0, 1] == pytest.approx(2.0 * np.exp(-1.0))
    assert right[0, 2] == 0.0  # no neighbour to the right
    assert pairs[(1, 1)][0, 0] == pytest.approx(2.0 / np.sqrt(2))
    assert pairs[(1, -1)][0, 0] == 0.0 and pairs[(1, 0)][1, 0] == 0.0


@pytest.mark.parametrize(("connectivity", "smoothness"), [(4, 1.0), (8, 0.5)])
def test_removes_speckle_keeps_thin_road(connectivity: int, smoothness: float) -> None:
    # Per road column the cut costs 2 boundaries, the unaries gain 3·log(0.8/0.2) ≈ 4.16;
    # an isolated speck gains log(0.7/0.3) ≈ 0.85 but costs its whole perimeter.
    rng = np.random.default_rng(0)
    H, W = 40, 60
    prob = np.full((H, W), 0.2)
    road = np.zeros((H, W), bool)
    road[18:21, :] = True  # 3-px wide horizontal road
    prob[road] = 0.8
    speck = np.zeros((H, W), bool)
    speck[rng.integers(2, 14, 15), rng.integers(0, W, 15)] = True
    speck[rng.integers(25, 38, 15), rng.integers(0, W, 15)] = True
    prob[speck] = 0.7
    assert (prob > 0.5).sum() == road.sum() + speck.sum()
    out = graph_cut(prob, smoothness=smoothness, connectivity=connectivity)
    np.testing.assert_array_equal(out, road)
    # Far too strong a smoothness removes the road too (the test can fail).
    assert not graph_cut(prob, smoothness=4.0, connectivity=connectivity).any()


def _pair_sums_one_by_one(bands: np.ndarray, valid: np.ndarray, core: tuple[slice, slice]) -> tuple[np.ndarray, int]:
    """Squared differences of the pairs (p, p + offset) with p in the core, both with data, one pair at a time."""
    height, width = valid.shape
    total, pairs = np.zeros(bands.shape[0]), 0
    for r in range(height)[core[0]]:
        for c in range(width)[core[1]]:
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                qr, qc = r + dr, c + dc
                if 0 <= qr < height and 0 <= qc < width and valid[r, c] and valid[qr, qc]:
                    d = bands[:, r, c] - bands[:, qr, qc]
                    total += d * d
                    pairs += 1
    return total, pairs


@pytest.mark.parametrize("core", [(slice(None), slice(None)), (slice(3, 20), slice(5, 27)), (slice(0, 10), slice(20, 31))])
@pytest.mark.parametrize("holes", [False, True])
def test_graph_cut_statistics_sum_every_neighbour_pair_of_the_core_once(core, holes):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3, 23, 31)).astype(np.uint8)
    valid = rng.random((23, 31)) > 0.2 if holes else np.ones((23, 31), bool)
    sums, squares, count, diff2, pairs = GraphCut().tile_statistics({"image": image}, StepContext(geo=None, valid=valid, core=core))
    expected, n = _pair_sums_one_by_one(image.astype(np.float64), valid, core)
    assert np.allclose(diff2, expected) and int(pairs) == n
    inside = image[:, core[0], core[1]][:, valid[core]].astype(np.float64)
    assert int(count) == inside.shape[1] and np.allclose(sums, inside.sum(axis=1)) and np.allclose(squares, (inside**2).sum(axis=1))


def test_a_step_without_smoothness_is_a_threshold_that_needs_no_statistics() -> None:
    rng = np.random.default_rng(2)
    prob = rng.random((17, 19)).astype(np.float32)
    valid = rng.random((17, 19)) > 0.1
    step = GraphCut(smoothness=0.0)
    assert step.statistics_inputs() == () and step.halo_px(None) == 0  # no scene pass, no halo
    out = step.apply({"probability": prob, "image": rng.random((3, 17, 19))}, StepContext(geo=None, valid=valid, core=(slice(None), slice(None))))
    np.testing.assert_array_equal(out["mask"], (prob > 0.5) & valid)  # runs unfitted
    assert GraphCut(smoothness=1.0).statistics_inputs() == ("image",) and GraphCut(smoothness=1.0, contrast=False).statistics_inputs() == ()
