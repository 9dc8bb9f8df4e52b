"""Training crops: augmentations keep image and labels aligned."""

from __future__ import annotations

import numpy as np
import torch

from geoseg.nn.arrays import IGNORE_INDEX
from geoseg.nn.data import Augmentation, TrainingScene, _Nearest, sample_batch


def _band_scene() -> TrainingScene:
    """A horizontal bright road 10 px wide across a 200² scene, labelled as road."""
    image = np.zeros((3, 200, 200), np.float32)
    labels = np.zeros((200, 200), np.uint8)
    image[:, 95:105, :] = 1.0
    labels[95:105, :] = 1
    return TrainingScene(image, labels)


def _road_direction(labels: np.ndarray) -> float:
    """Direction (degrees in [0, 180)) of the road pixels' principal axis."""
    rows, cols = np.nonzero(labels == 1)
    cov = np.cov(np.stack([cols, -rows]).astype(float))
    vals, vecs = np.linalg.eigh(cov)
    vx, vy = vecs[:, np.argmax(vals)]
    return float(np.degrees(np.arctan2(vy, vx)) % 180.0)


def test_free_rotation_turns_image_and_labels_together() -> None:
    scene = _band_scene()
    batch = sample_batch([scene], 16, 64, Augmentation(False, False, 0.0, (1.0, 1.0), free_rotation=True), torch.Generator().manual_seed(0))
    assert batch.image.shape == (16, 3, 64, 64)
    labels, image = batch.labels.numpy(), batch.image.numpy()
    assert set(np.unique(labels)) <= {0, 1} and IGNORE_INDEX not in labels  # the window holds the turned crop
    directions = []
    for lab, img in zip(labels, image):
        agree = ((img[0] > 0.5) == (lab == 1)).mean()
        assert agree > 0.97  # bilinear image, nearest labels: they differ only along the road's border
        if (lab == 1).sum() > 150:
            directions.append(_road_direction(lab))
    # roads now run in many directions, not only 0 or 90 degrees
    off_axis = [d for d in directions if min(d % 90.0, 90.0 - d % 90.0) > 10.0]
    assert len(directions) >= 5 and len(off_axis) >= 3


def test_without_free_rotation_roads_keep_the_axes() -> None:
    batch = sample_batch([_band_scene()], 16, 64, Augmentation(True, True, 0.0, (1.0, 1.0)), torch.Generator().manual_seed(0))
    for lab in batch.labels.numpy():
        if (lab == 1).sum() > 150:
            d = _road_direction(lab)
            assert min(d % 90.0, 90.0 - d % 90.0) < 1.0


def _flat_scene(value: float, weight: float = 1.0) -> TrainingScene:
    return TrainingScene(np.full((3, 80, 80), value, np.float32), np.zeros((80, 80), np.uint8), weight=weight)


def test_crops_are_drawn_in_proportion_to_scene_weights() -> None:
    scenes = [_flat_scene(0.0, 0.9), _flat_scene(1.0, 0.1)]
    batch = sample_batch(scenes, 2000, 32, Augmentation(False, False, 0.0, (1.0, 1.0)), torch.Generator().manual_seed(0))
    from_second = float((batch.image[:, 0, 16, 16] == 1.0).float().mean())
    assert 0.08 < from_second < 0.12  # 10 % expected; binomial std 0.7 %


def test_equal_weights_draw_exactly_as_unweighted_scenes() -> None:
    aug = Augmentation(True, True, 0.1, (0.8, 1.25), free_rotation=True)
    plain = sample_batch([_flat_scene(0.0), _flat_scene(1.0)], 16, 32, aug, torch.Generator().manual_seed(3))
    weighted = sample_batch([_flat_scene(0.0, 0.5), _flat_scene(1.0, 0.5)], 16, 32, aug, torch.Generator().manual_seed(3))
    assert torch.equal(plain.image, weighted.image)  # same random draws: earlier results reproduce


def test_nearest_samples_equal_indexing_by_rounded_positions() -> None:
    """Labels, edges and centerlines are read at the pixel nearest each sample position, and
    ``outside`` beyond the raster (positions here run 3 px past every side)."""
    gen = torch.Generator().manual_seed(5)
    raster = np.arange(7 * 9, dtype=np.uint8).reshape(7, 9)
    rows = torch.rand((2, 20, 20), generator=gen, dtype=torch.float64) * 13 - 3
    cols = torch.rand((2, 20, 20), generator=gen, dtype=torch.float64) * 15 - 3
    got = _Nearest.at(rows, cols, raster.shape).sample(raster, IGNORE_INDEX, torch.long)
    r, c = np.rint(rows.numpy()).astype(int), np.rint(cols.numpy()).astype(int)
    inside = (r >= 0) & (r < 7) & (c >= 0) & (c < 9)
    expected = np.where(inside, raster[r.clip(0, 6), c.clip(0, 8)], IGNORE_INDEX)
    assert 0 < inside.mean() < 1
    np.testing.assert_array_equal(got.numpy(), expected)
