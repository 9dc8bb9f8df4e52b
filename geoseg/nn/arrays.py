"""The networks' array conventions, without torch: input stride, ignored labels, band normalisation.

Inference in onnxruntime (:mod:`geoseg.nn.onnx_runtime`) prepares scenes with these alone, so
a run of a converted or exported model never imports torch (about a second of start-up).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["IGNORE_INDEX", "STRIDE", "band_statistics", "normalise"]

#: Output stride of the encoders; input sides must be multiples of it.
STRIDE = 16

#: Label of pixels that do not enter the loss (unlabelled, or the uncertain band along a road's edge).
IGNORE_INDEX = 255


def band_statistics(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over all pixels of raw ``(bands, rows, cols)`` images.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        Raw ``(bands, rows, cols)`` images, all with the same band count (sizes may differ).

    Returns
    -------
    mean : numpy.ndarray
        ``(bands,)`` float64 mean of each band over the pixels of all images pooled.
    std : numpy.ndarray
        ``(bands,)`` float64 standard deviation of each band, at least 1e-6 (so a constant
        band does not divide by 0 in :func:`normalise`).

    Examples
    --------
    >>> mean, std = band_statistics([np.array([[[0.0, 2.0]], [[1.0, 1.0]]])])
    >>> mean.tolist(), std.tolist()
    ([1.0, 1.0], [1.0, 1e-06])
    """
    stacked = np.concatenate([np.asarray(im, np.float64).reshape(im.shape[0], -1) for im in images], axis=1)
    return stacked.mean(axis=1), np.maximum(stacked.std(axis=1), 1e-6)


def normalise(image: np.ndarray, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray) -> np.ndarray:
    """z-score each band of a raw ``(bands, rows, cols)`` image, as float32.

    Parameters
    ----------
    image : numpy.ndarray
        Raw ``(bands, rows, cols)`` pixel values (any numeric type).
    mean : sequence of float or numpy.ndarray
        Per-band mean, one value per band of ``image`` (e.g. from :func:`band_statistics`).
    std : sequence of float or numpy.ndarray
        Per-band standard deviation, one value per band of ``image``.

    Returns
    -------
    numpy.ndarray
        ``(bands, rows, cols)`` float32: ``(image - mean) / std`` band by band.

    Examples
    --------
    >>> normalise(np.array([[[0, 2]], [[4, 4]]]), [1.0, 2.0], [1.0, 2.0]).tolist()
    [[[-1.0, 1.0]], [[1.0, 1.0]]]
    """
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    return (image.astype(np.float32) - m) / s
