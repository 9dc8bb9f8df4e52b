"""Unlabelled scenes for the learning-from-unlabelled-data modes, on the model's pixel grid.

A scene whose GSD differs from the model's training GSD is resampled to it exactly as the
``nn_classify`` step does with ``resample: true`` (:mod:`geoseg.nn.resample`: the normalised
image by ``scene GSD / model GSD``, area-averaged when it shrinks, bilinear when it grows);
its optional check labels follow by majority. The check labels are only ever used to
*report* pseudo-label quality, never in a loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geoseg.errors import InputMismatchError
from geoseg.nn.arrays import IGNORE_INDEX, normalise
from geoseg.nn.modelfile import NNModel
from geoseg.nn.resample import resample_bands, resample_labels, zoomed_shape

if TYPE_CHECKING:
    from geoseg.nn.fitting import SceneData

__all__ = ["UnlabeledScene", "pseudo_label_scores", "unlabeled_scenes"]

#: Relative GSD difference below which a scene is used as is (the step's default tolerance is wider).
GSD_TOLERANCE = 0.02


@dataclass
class UnlabeledScene:
    """An unlabelled scene, normalised by the model's statistics and at the model's GSD.

    Attributes
    ----------
    image : numpy.ndarray
        ``(bands, rows, cols)`` float32.
    check : numpy.ndarray
        ``(rows, cols)`` uint8 labels for reporting only: 1 road, 0 background, 255 unknown.
    source : str
        Where it came from.
    zoom : float
        Resampling factor that was applied (1.0: none).
    """

    image: np.ndarray
    check: np.ndarray
    source: str
    zoom: float = 1.0


def unlabeled_scenes(model: NNModel, data: Sequence[SceneData]) -> list[UnlabeledScene]:
    """Normalise and resample raw scenes (:class:`geoseg.nn.train.SceneData`) to ``model``'s GSD.

    Raises
    ------
    InputMismatchError
        A scene lacks a band the model reads.
    """
    out = []
    for s in data:
        image, labels, gsd, source = s.image, s.labels, s.gsd_m, s.source
        if image.shape[0] < max(model.bands):
            raise InputMismatchError(f"{source}: has {image.shape[0]} band(s), the model reads bands {model.bands}")
        x = normalise(image[[b - 1 for b in model.bands]], model.band_mean, model.band_std)
        zoom = gsd / model.train_gsd_m if np.isfinite(model.train_gsd_m) else 1.0
        if abs(zoom - 1.0) > GSD_TOLERANCE:
            size = zoomed_shape(x.shape, zoom)
            x, labels = resample_bands(x, size), resample_labels(labels, size)
        else:
            zoom = 1.0
        out.append(UnlabeledScene(np.ascontiguousarray(x), np.asarray(labels, np.uint8), source, zoom))
    return out


def pseudo_label_scores(pseudo: Sequence[np.ndarray], checks: Sequence[np.ndarray]) -> dict[str, float]:
    """Coverage and quality of pseudo-labels.

    Parameters
    ----------
    pseudo : sequence of numpy.ndarray
        Pseudo-labels (1 road, 0 background, 255 not labelled).
    checks : sequence of numpy.ndarray
        Check labels on the same grids (255 = unknown).

    Returns
    -------
    dict
        ``coverage``: fraction of pixels that got a pseudo-label; ``road_fraction``: share of
        road among them; ``iou``: road IoU of the pseudo-labels against the check labels on
        pixels that have both (NaN when no check label exists).
    """
    n = covered = road = tp = fp = fn = checked = 0
    for p, c in zip(pseudo, checks):
        has = p != IGNORE_INDEX
        n += p.size
        covered += int(has.sum())
        road += int((p == 1).sum())
        both = has & (c != IGNORE_INDEX)
        checked += int(both.sum())
        tp += int(((p == 1) & (c == 1) & both).sum())
        fp += int(((p == 1) & (c == 0) & both).sum())
        fn += int(((p == 0) & (c == 1) & both).sum())
    iou = (tp / (tp + fp + fn) if tp + fp + fn else 1.0) if checked else float("nan")
    return {"coverage": covered / max(n, 1), "road_fraction": road / max(covered, 1), "iou": iou}
