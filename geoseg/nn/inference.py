"""Tiled inference of a raster classifier over a scene, with overlap and smooth blending.

The scene is cut into ``tile_px`` tiles that overlap by ``overlap_px``; each tile's output is
weighted by a window that ramps linearly from (almost) 0 at a tile side that lies inside the
scene to 1 at ``overlap_px`` from it, and the weighted outputs are summed and divided by the
summed weights. Sides on the scene border are not ramped. So every pixel is a convex
combination of the tiles that see it, dominated by the tile that sees it farthest from its
border: no seams. Tiles run in batches (torch classifiers under :func:`torch.inference_mode`).

With ``tta`` (test-time augmentation) each tile is classified in its 8 orientations (4
rotations by 90°, each also mirrored) and the probabilities, turned back, are averaged: 8×
the cost, smoother and more accurate road borders, and a prediction that no longer depends
on the scene's orientation.

:func:`predict_scene` adds the resampling of models trained at a working GSD
(:mod:`geoseg.nn.resample`): the scene is resampled to the model's grid, classified, and the
probabilities resampled back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from geoseg.nn.arrays import STRIDE
from geoseg.nn.resample import resample_bands, resize_bilinear, zoomed_shape

if TYPE_CHECKING:
    import torch

    from geoseg.nn.modelfile import NNModel

# torch is imported only to run torch modules: a graph in onnxruntime (geoseg.nn.onnx_runtime)
# takes and gives numpy arrays, and the tiling, blending and resampling here are numpy's

__all__ = ["axis_tiles", "blend_window", "predict", "predict_scene", "predict_tiled", "tile_origins"]


def tile_origins(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, size)`` with at least ``overlap`` overlap.

    The fewest tiles that keep the overlap, spread evenly: the first starts at 0, the last
    ends at ``size``.

    Parameters
    ----------
    size : int
        Length of the axis to cover, pixels.
    tile : int
        Tile side, pixels.
    overlap : int
        Smallest overlap of neighbouring tiles; less than ``tile``.

    Returns
    -------
    list of int
        Increasing start offsets; ``[0]`` when one tile covers the axis.

    Examples
    --------
    >>> tile_origins(600, 256, 64), tile_origins(200, 256, 64)
    ([0, 172, 344], [0])
    """
    if size <= tile:
        return [0]
    step = tile - overlap
    n = int(np.ceil((size - tile) / step)) + 1
    return [int(round(i * (size - tile) / (n - 1))) for i in range(n)]


def axis_tiles(size: int, tile: int, overlap: int, max_tile: int, multiple: int = STRIDE) -> tuple[int, list[int]]:
    """Tile side and start offsets along one axis: the fewest pixels classified that keep the overlap.

    With ``n`` tiles a side of ``(size + (n - 1) * overlap) / n`` (rounded up to ``multiple``)
    covers the axis with at least ``overlap`` between neighbours. Of the counts whose side lies
    in ``[tile, max_tile]``, the one that classifies the fewest pixels (``n * side``) is taken,
    the smaller side on a tie. Fixed ``tile``-side tiles round the count up: a 1028-px axis
    takes 6 tiles of 256 with an overlap of 64 (1536 px classified), against 4 tiles of 320
    (1280 px) here. An axis no longer than ``tile`` is one tile of ``tile``.

    Parameters
    ----------
    size : int
        Length of the axis to cover, pixels.
    tile : int
        Nominal tile side (the model's training crop), a multiple of ``multiple``; the smallest side used.
    overlap : int
        Smallest overlap of neighbouring tiles; less than ``tile``.
    max_tile : int
        Largest side allowed (a multiple of ``multiple``; at least ``tile``).
    multiple : int
        Sides are multiples of this (the model's stride).

    Returns
    -------
    tuple of (int, list of int)
        The side, and the tiles' start offsets (:func:`tile_origins` for that side).

    Examples
    --------
    >>> axis_tiles(1028, 256, 64, 320)
    (320, [0, 236, 472, 708])
    >>> axis_tiles(413, 256, 64, 320), axis_tiles(200, 256, 64, 320)
    ((256, [0, 157]), (256, [0]))
    """
    if size <= tile:
        return tile, [0]
    sides = {n: max(tile, _round_up((size + (n - 1) * overlap) / n, multiple)) for n in range(1, len(tile_origins(size, tile, overlap)) + 1)}
    _, side = min((n * s, s) for n, s in sides.items() if s <= max_tile)  # the fixed tiles' own count always qualifies (side = tile)
    return side, tile_origins(size, side, overlap)


def _round_up(value: float, multiple: int) -> int:
    """The smallest multiple of ``multiple`` not below ``value``."""
    return int(np.ceil(value / multiple)) * multiple


def blend_window(tile: int | tuple[int, int], overlap: int, ramp_top: bool, ramp_bottom: bool, ramp_left: bool, ramp_right: bool) -> np.ndarray:
    """Blending weights of a tile: linear ramps of width ``overlap`` on the chosen sides.

    A ramp rises from ``0.5 / overlap`` at the side's pixel to 1 at ``overlap`` pixels from
    it; ramps of two sides multiply. Weights are at least 1e-4, so every pixel of a tile
    counts.

    Parameters
    ----------
    tile : int or tuple of int
        Side of a square tile, or its ``(rows, cols)``, pixels.
    overlap : int
        Width of the ramps, pixels.
    ramp_top, ramp_bottom, ramp_left, ramp_right : bool
        Ramp this side (a side inside the scene); the others keep weight 1 up to the border.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` float32 weights in ``[1e-4, 1]``.

    Examples
    --------
    >>> w = blend_window(4, 2, True, False, False, False)
    >>> w[:, 0].tolist(), w[0].tolist()
    ([0.25, 0.75, 1.0, 1.0], [0.25, 0.25, 0.25, 0.25])
    >>> blend_window((3, 5), 2, False, False, True, True)[0].tolist()
    [0.25, 0.75, 1.0, 0.75, 0.25]
    """
    n_rows, n_cols = (tile, tile) if isinstance(tile, int) else tile
    rows = _ramps(n_rows, overlap, ramp_top, ramp_bottom)
    cols = _ramps(n_cols, overlap, ramp_left, ramp_right)
    return np.maximum(np.outer(rows, cols), 1e-4)


def _ramps(length: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    """Weights along one side of a tile: a ramp of width ``overlap`` at the start and/or the end."""
    ramp = np.minimum(1.0, (np.arange(length) + 0.5) / max(overlap, 1)).astype(np.float32)
    ones = np.ones(length, np.float32)
    return (ramp if start else ones) * (ramp[::-1] if end else ones)


def _pad_to_stride(image: np.ndarray, multiple: int = STRIDE) -> np.ndarray:
    rows, cols = image.shape[-2:]
    return _pad_to(image, rows + (-rows) % multiple, cols + (-cols) % multiple)


def _pad_to(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``image`` padded at the bottom and right to ``(rows, cols)`` (reflected, or repeated when too small to reflect)."""
    pr, pc = rows - image.shape[-2], cols - image.shape[-1]
    if not (pr or pc):
        return image
    mode: Literal["reflect", "edge"] = "reflect" if image.shape[-2] > pr and image.shape[-1] > pc else "edge"
    return np.pad(image, ((0, 0), (0, pr), (0, pc)), mode=mode)


def _probabilities(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Channels: class probabilities (softmax of ``seg``), then sigmoid of ``centerline`` if any."""
    import torch
    import torch.nn.functional as F

    parts = [F.softmax(outputs["seg"], dim=1)]
    if "centerline" in outputs:
        parts.append(torch.sigmoid(outputs["centerline"]))
    return torch.cat(parts, dim=1)


def _classify(model: Any, x: np.ndarray, tta: bool, device: str) -> np.ndarray:
    """Probabilities ``(N, heads, H, W)`` of a batch of normalised tiles, averaged over the 8 orientations with ``tta``.

    ``model`` is a torch classifier (run on ``device``) or a module that gives probabilities
    from arrays (an ONNX graph in onnxruntime, :class:`~geoseg.nn.onnx_runtime.OnnxModule`).
    """
    if getattr(model, "gives_probabilities", False):
        return _classify_arrays(model, x, tta)
    import torch

    model.eval()
    with torch.inference_mode():
        batch = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)
        if not tta:
            return _probabilities(model(batch)).float().cpu().numpy()
        views = []
        for mirror in (False, True):
            view = batch.flip(-1) if mirror else batch
            for quarter in range(4):
                prob = torch.rot90(_probabilities(model(torch.rot90(view, quarter, (-2, -1)).contiguous())), -quarter, (-2, -1))
                views.append(prob.flip(-1) if mirror else prob)
        return torch.stack(views).mean(dim=0).float().cpu().numpy()


def _classify_arrays(model: Any, x: np.ndarray, tta: bool) -> np.ndarray:
    """:func:`_classify` for a module that maps arrays to probabilities."""
    if not tta:
        return np.asarray(model(x), np.float32)
    views = []
    for mirror in (False, True):
        view = x[..., ::-1] if mirror else x
        for quarter in range(4):
            prob = np.rot90(model(np.ascontiguousarray(np.rot90(view, quarter, axes=(-2, -1)))), -quarter, axes=(-2, -1))
            views.append(prob[..., ::-1] if mirror else prob)
    return np.stack(views).mean(axis=0, dtype=np.float32)


def predict(model: Any, image: np.ndarray, device: str = "cpu", tta: bool = False) -> np.ndarray:
    """Whole-image inference (no tiling) of a normalised ``(bands, rows, cols)`` image.

    The image is padded to a multiple of the model stride (reflected, or repeated when too
    small to reflect) and the output cropped back. With ``tta``, the mean over the image's 8
    orientations (see the module docstring).

    Parameters
    ----------
    model : Any
        A torch raster classifier (see :mod:`geoseg.nn.models`), or a module that gives
        probabilities from arrays (:class:`~geoseg.nn.onnx_runtime.OnnxModule`).
    image : numpy.ndarray
        Normalised ``(bands, rows, cols)`` float32 image.
    device : str
        Torch device (unused for a module that takes arrays).
    tta : bool
        Average over the image's 8 orientations.

    Returns
    -------
    numpy.ndarray
        ``(channels, rows, cols)`` float32: class probabilities, then the centerline
        probability when the model has a centerline head.

    Examples
    --------
    A stand-in module that gives its input back shows the padding and the crop:

    >>> class Echo:
    ...     gives_probabilities = True
    ...
    ...     def __call__(self, x):
    ...         print("runs on", x.shape)
    ...         return x
    >>> predict(Echo(), np.ones((2, 5, 7), np.float32)).shape
    runs on (1, 2, 16, 16)
    (2, 5, 7)
    """
    rows, cols = image.shape[-2:]
    padded = _pad_to_stride(image)
    return _classify(model, padded[None], tta, device)[0, :, :rows, :cols]


def predict_tiled(
    model: Any,
    image: np.ndarray,
    *,
    tile_px: int = 256,
    overlap_px: int = 64,
    max_tile_px: int | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    tta: bool = False,
) -> np.ndarray:
    """Tiled inference with overlap and smooth blending (see the module docstring).

    Parameters
    ----------
    model : Any
        A geoseg raster classifier (a ``torch.nn.Module``, see :mod:`geoseg.nn.models`), or
        its ONNX graph in onnxruntime (:class:`~geoseg.nn.onnx_runtime.OnnxModule`).
    image : numpy.ndarray
        Normalised ``(bands, rows, cols)`` float32 image.
    tile_px : int
        Tile side; rounded up to a multiple of the model stride.
    overlap_px : int
        Overlap between neighbouring tiles (and width of the blending ramps); at most half
        the tile.
    max_tile_px : int, optional
        Largest tile side (default: 5/4 of ``tile_px``). Along each axis the tiles take the
        side between ``tile_px`` and this that classifies the fewest pixels
        (:func:`axis_tiles`): on a 1028² region with the default 256-px tiles and 64-px
        overlap, 16 tiles of 320² instead of 36 of 256² (31 % fewer pixels). ``tile_px``
        keeps every tile at ``tile_px``.
    batch_size : int
        Tiles per forward pass.
    device : str
        Torch device.
    tta : bool
        Average each tile over its 8 orientations.

    Returns
    -------
    numpy.ndarray
        ``(channels, rows, cols)`` float32, as :func:`predict`.

    Examples
    --------
    Blending is a convex combination: a stand-in module that gives its input back gives the
    image back, across the overlaps of its 4 tiles.

    >>> class Echo:
    ...     gives_probabilities = True
    ...
    ...     def __call__(self, x):
    ...         return x
    >>> image = np.arange(40 * 50, dtype=np.float32).reshape(1, 40, 50) / 100
    >>> out = predict_tiled(Echo(), image, tile_px=32, overlap_px=8)
    >>> out.shape, out[0, 20, 28:31].astype(float).round(2).tolist()
    ((1, 40, 50), [10.28, 10.29, 10.3])
    """
    rows, cols = image.shape[-2:]
    tile = _round_up(tile_px, STRIDE)
    overlap = min(overlap_px, tile // 2)
    largest = max(tile, _round_up(tile * 5 // 4 if max_tile_px is None else max_tile_px, STRIDE))
    (r_side, r_orig), (c_side, c_orig) = axis_tiles(rows, tile, overlap, largest), axis_tiles(cols, tile, overlap, largest)
    padded = _pad_to(image, max(rows, r_side), max(cols, c_side))
    if len(r_orig) == len(c_orig) == 1:
        return predict(model, padded, device, tta)[:, :rows, :cols]
    prows, pcols = padded.shape[-2:]
    jobs = [(r, c) for r in r_orig for c in c_orig]
    acc: np.ndarray | None = None
    weight = np.zeros((prows, pcols), np.float32)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        x = np.stack([padded[:, r : r + r_side, c : c + c_side] for r, c in chunk]).astype(np.float32)
        probs = _classify(model, x, tta, device)
        if acc is None:
            acc = np.zeros((probs.shape[1], prows, pcols), np.float32)
        for (r, c), p in zip(chunk, probs):
            w = blend_window((r_side, c_side), overlap, r > 0, r + r_side < prows, c > 0, c + c_side < pcols)
            acc[:, r : r + r_side, c : c + c_side] += p * w
            weight[r : r + r_side, c : c + c_side] += w
    assert acc is not None
    return (acc / weight)[:, :rows, :cols]


def predict_scene(
    model: NNModel,
    image: np.ndarray,
    zoom: float = 1.0,
    *,
    tile_px: int | None = None,
    overlap_px: int | None = None,
    max_tile_px: int | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    tta: bool = False,
) -> np.ndarray:
    """Classify a normalised scene on the model's grid and return the probabilities on the scene's.

    Parameters
    ----------
    model : NNModel
        The classifier and its tiling defaults.
    image : numpy.ndarray
        Normalised ``(bands, rows, cols)`` float32 scene.
    zoom : float
        Scene GSD / model GSD: the scene is resampled by this factor before inference
        (:func:`geoseg.nn.resample.resample_bands`) and the probabilities back (bilinearly);
        1 classifies the scene as it is.
    tile_px, overlap_px : int, optional
        Tiling on the model's grid (default: the model's).
    max_tile_px : int, optional
        Largest tile side (:func:`predict_tiled`; default: 5/4 of the tile side).
    batch_size : int
        Tiles per forward pass.
    device : str
        Torch device.
    tta : bool
        Average each tile over its 8 orientations (:func:`predict_tiled`).

    Returns
    -------
    numpy.ndarray
        ``(channels, rows, cols)`` float32 on the scene's grid, as :func:`predict`.

    Examples
    --------
    With a stand-in module that gives its input back, a scene classified at half its
    resolution comes back area-averaged, then bilinearly interpolated:

    >>> from geoseg.nn.modelfile import NNModel
    >>> class Echo:
    ...     gives_probabilities = True
    ...
    ...     def __call__(self, x):
    ...         return x
    >>> model = NNModel(Echo(), "baseline", {}, bands=[1], band_mean=[0.0], band_std=[1.0])
    >>> scene = np.array([[[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.0]]], np.float32)
    >>> predict_scene(model, scene, zoom=0.5).tolist()
    [[[0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 3.0, 4.0]]]
    """
    shape = image.shape[-2:]
    x = image if zoom == 1.0 else resample_bands(image, zoomed_shape(image.shape, zoom))
    probs = predict_tiled(
        model.module, x, tile_px=tile_px or model.tile_px, overlap_px=model.overlap_px if overlap_px is None else overlap_px, max_tile_px=max_tile_px,
        batch_size=batch_size, device=device, tta=tta,
    )  # fmt: skip
    if zoom == 1.0:
        return probs
    return resize_bilinear(probs, (int(shape[0]), int(shape[1])))
