"""Binary road/background segmentation by graph cuts.

The road probability from :mod:`geoseg.road.mjcr` is regularised with a contrast-sensitive
Potts model solved exactly by s-t min cut, as in stage 1 of Cheng, Zhu, Xiang, Pan, arXiv
1508.06163 (Neurocomputing 2016, "FMCR + graph cuts"), following Boykov & Jolly,
"Interactive graph cuts for optimal boundary & region segmentation of objects in N-D
images", ICCV 2001. The energy minimised over labellings ``L`` (True = road) is::

    E(L) = Σ_p U_p(L_p) + Σ_{p~q} w_pq [L_p ≠ L_q]
    U_p(road) = −log p_p,   U_p(background) = −log(1 − p_p)   (p clipped to [eps, 1 − eps])
    w_pq = smoothness · exp(−β ‖I_p − I_q‖²) / dist(p, q)

with ``β = 1 / (2 ⟨‖I_p − I_q‖²⟩)`` (mean over all neighbour pairs of the neighbourhood) by
default, and ``w_pq = smoothness / dist(p, q)`` when no image is given. The paper text was
not available to us; the unary/pairwise forms are the standard ones of Boykov & Jolly, and
the smoothness default (1.0, in nats) is ours.

PyMaxflow convention: after ``maxflow()``, ``get_grid_segments`` is True for nodes on the
sink side; such a node's source edge is cut, so the source capacity is the cost of the
sink-side label. We make the sink side = road: source capacity = ``−log p``.
"""

from __future__ import annotations

import maxflow
import numpy as np

from geoseg.errors import InputMismatchError

__all__ = ["graph_cut", "pairwise_weights"]

# Offsets (drow, dcol) of one half of the neighbourhood; each pair is added once, symmetric.
_OFFSETS = {4: ((0, 1), (1, 0)), 8: ((0, 1), (1, 0), (1, 1), (1, -1))}


def _neighbour_diff2(image: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``‖I_p − I_{p+(dr,dc)}‖²`` at p, NaN where the neighbour is outside the grid."""
    _, H, W = image.shape
    out = np.full((H, W), np.nan, np.float64)
    r0, r1 = 0, H - dr
    c0, c1 = max(0, -dc), W - max(0, dc)
    diff = image[:, r0:r1, c0:c1] - image[:, r0 + dr : r1 + dr, c0 + dc : c1 + dc]
    out[r0:r1, c0:c1] = np.einsum("bij,bij->ij", diff, diff)
    return out


def pairwise_weights(
    shape: tuple[int, int],
    image: np.ndarray | None = None,
    *,
    smoothness: float = 1.0,
    contrast_beta: float | None = None,
    connectivity: int = 8,
) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Contrast-sensitive Potts weights of every neighbour pair.

    Parameters
    ----------
    shape : (int, int)
        Grid shape ``(H, W)``.
    image : ndarray, shape (bands, H, W) or (H, W), optional
        Image for the contrast term; None gives a plain Potts model.
    smoothness : float, default 1.0
        Weight of a cut between 4-neighbours of identical colour.
    contrast_beta : float, optional
        β of ``exp(−β‖I_p − I_q‖²)``; default ``1 / (2 ⟨‖I_p − I_q‖²⟩)`` (0 when all
        neighbours are identical).
    connectivity : {4, 8}, default 8
        Neighbourhood; diagonal weights are divided by √2.

    Returns
    -------
    list of ((drow, dcol), ndarray (H, W))
        For each offset, the weight of the pair ``(p, p + offset)`` stored at p, 0 where
        the neighbour falls outside the grid.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If ``connectivity`` is not 4 or 8, ``smoothness`` is negative, or ``image`` does not
        cover the grid.

    Examples
    --------
    >>> [(offset, w.tolist()) for offset, w in pairwise_weights((2, 2), connectivity=4)]
    [((0, 1), [[1.0, 0.0], [1.0, 0.0]]), ((1, 0), [[1.0, 1.0], [0.0, 0.0]])]
    >>> image = np.array([[0.0, 0.0, 1.0]])
    >>> (_, w), _ = pairwise_weights((1, 3), image, contrast_beta=1.0, connectivity=4)
    >>> w.round(3).tolist()  # the cut across the edge is cheaper: exp(-1)
    [[1.0, 0.368, 0.0]]
    """
    if connectivity not in _OFFSETS:
        raise InputMismatchError(f"connectivity must be 4 or 8, got {connectivity}")
    if smoothness < 0:
        raise InputMismatchError(f"smoothness must be >= 0, got {smoothness}")
    H, W = shape
    offsets = _OFFSETS[connectivity]
    if image is None:
        img = np.zeros((1, H, W))
        contrast_beta = 0.0
    else:
        img = np.asarray(image, np.float64)
        img = img[None] if img.ndim == 2 else img
        if img.shape[1:] != (H, W):
            raise InputMismatchError(f"image {img.shape} does not match the grid {shape}")
    diffs = [_neighbour_diff2(img, dr, dc) for dr, dc in offsets]
    if contrast_beta is None:
        mean = np.nanmean(np.concatenate([d.ravel() for d in diffs]))
        contrast_beta = 1.0 / (2.0 * mean) if mean > 0 else 0.0
    out = []
    for (dr, dc), d2 in zip(offsets, diffs):
        w = smoothness * np.exp(-contrast_beta * d2) / float(np.hypot(dr, dc))
        out.append(((dr, dc), np.nan_to_num(w, nan=0.0)))
    return out


def graph_cut(
    prob: np.ndarray,
    image: np.ndarray | None = None,
    *,
    smoothness: float = 1.0,
    contrast_beta: float | None = None,
    connectivity: int = 8,
    eps: float = 1e-4,
) -> np.ndarray:
    """Exact minimum of the road/background Potts energy (module docstring).

    Parameters
    ----------
    prob : ndarray, shape (H, W)
        Road probability in [0, 1].
    image : ndarray, shape (bands, H, W) or (H, W), optional
        Normalised image for contrast-sensitive weights; None gives plain Potts weights.
    smoothness : float, default 1.0
        Pairwise weight (nats) of a cut between identical 4-neighbours; 0 gives
        ``prob > 0.5``.
    contrast_beta : float, optional
        β of the contrast term; default ``1 / (2 ⟨‖I_p − I_q‖²⟩)`` (Boykov–Jolly).
    connectivity : {4, 8}, default 8
        Neighbourhood system.
    eps : float, default 1e-4
        Probabilities are clipped to ``[eps, 1 − eps]`` before the logarithms.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True = road.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If ``prob`` is not 2-D or holds NaN or infinite values, or (``smoothness`` not 0)
        ``connectivity`` is not 4 or 8, ``smoothness`` is negative, or ``image`` does not
        cover ``prob``'s grid.

    Examples
    --------
    A two-pixel-wide road with a weak column: the smoothness term closes the gap.

    >>> prob = np.full((4, 6), 0.1); prob[1:3, :] = 0.9; prob[1:3, 2] = 0.4
    >>> graph_cut(prob, smoothness=0.0).astype(int)[1].tolist()
    [1, 1, 0, 1, 1, 1]
    >>> graph_cut(prob, smoothness=0.5, connectivity=4).astype(int).tolist()
    [[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]]
    """
    p = np.asarray(prob, np.float64)
    if p.ndim != 2:
        raise InputMismatchError(f"prob must be (H, W), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise InputMismatchError("prob holds NaN or infinite values")
    if smoothness == 0:  # no pairwise term: each pixel takes its likelier label
        return p > 0.5
    p = np.clip(p, eps, 1.0 - eps)
    g = maxflow.Graph[float]()
    nodes = g.add_grid_nodes(p.shape)
    for (dr, dc), w in pairwise_weights(p.shape, image, smoothness=smoothness, contrast_beta=contrast_beta, connectivity=connectivity):
        structure = np.zeros((3, 3))
        structure[1 + dr, 1 + dc] = 1.0
        g.add_grid_edges(nodes, weights=w, structure=structure, symmetric=True)
    # Sink side = road: a sink-side node pays its source capacity (−log p).
    g.add_grid_tedges(nodes, -np.log(p), -np.log1p(-p))
    g.maxflow()
    return np.asarray(g.get_grid_segments(nodes), dtype=bool)
