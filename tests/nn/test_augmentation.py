"""Training crops: augmentations keep image and labels aligned."""

from __future__ import annotations

import numpy as np
import torch

from geoseg.nn.data import Augmentation, TrainingScene, sample_batch
from geoseg.nn.losses import IGNORE_INDEX


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
