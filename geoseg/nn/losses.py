"""Losses of the raster classifiers, with DecoupleSegNet's decoupled supervision.

Li et al., ECCV 2020 (arXiv 2007.10035; official code lxtGH/DecoupleSegNets) train with four
terms: OHEM cross-entropy on the final output (keep pixels whose true-class probability is
below 0.7, at least 10 000 of them per batch at Cityscapes scale), a body loss, an edge loss
(20 × class-balanced binary cross-entropy on boundary pixels, positive weight = fraction of
negatives) and an edge-attention loss (cross-entropy on the final output where the predicted
edge probability exceeds 0.8). Edge ground truth is the mask's boundary band.

Where geoseg differs:

- OHEM keeps at least ``min_kept_fraction`` of the labelled pixels of the batch (default
  1/16) instead of a fixed 10 000, since our batches are a few 256² crops;
- the body loss is a cross-entropy that ignores the boundary band (a hard "boundary
  relaxation"), instead of the official soft relaxation over neighbouring labels
  (ImgWtLossSoftNLL); it expresses the same idea: the body need not be right at edges;
- the optional centerline loss is a plain binary cross-entropy against a soft target, a
  Gaussian ridge along the annotated centerlines (:func:`geoseg.nn.data.centerline_target`):
  its optimum is the ridge itself, so the head peaks on the annotated line (a class-balanced
  BCE against a buffered band, tried first, made the head predict a band as wide as the road).

Labels use ``ignore_index`` (255) for pixels without ground truth; all functions are pure
torch on tensors (no file I/O).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from geoseg.nn.arrays import IGNORE_INDEX

__all__ = [
    "LossWeights",
    "balanced_bce",
    "body_loss",
    "boundary_band",
    "edge_attention_loss",
    "ohem_cross_entropy",
    "segmentation_losses",
    "soft_bce",
]


@dataclass(frozen=True)
class LossWeights:
    """Weights and settings of the loss terms (see the module docstring)."""

    ohem_threshold: float = 0.7
    min_kept_fraction: float = 1.0 / 16
    body: float = 1.0
    edge: float = 20.0
    edge_attention: float = 1.0
    edge_attention_threshold: float = 0.8
    centerline: float = 1.0


def boundary_band(labels: Tensor, radius_px: int = 2, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Boundary pixels of a label map: pixels within ``radius_px`` of a pixel of another class.

    Parameters
    ----------
    labels : Tensor
        ``(N, H, W)`` integer labels; ``ignore_index`` pixels are treated as background.
    radius_px : int
        Half-width of the band (Chebyshev distance).
    ignore_index : int
        Label of unlabelled pixels (only road, label 1, is told from the rest).

    Returns
    -------
    Tensor
        ``(N, H, W)`` float 0/1: 1 on both sides of every road border, within ``radius_px``.

    Examples
    --------
    >>> boundary_band(torch.tensor([[[0, 0, 1, 1, 1]]]), radius_px=1).tolist()
    [[[0.0, 1.0, 1.0, 0.0, 0.0]]]
    """
    road = (labels == 1).float().unsqueeze(1)
    k = 2 * radius_px + 1
    dilated = F.max_pool2d(road, k, stride=1, padding=radius_px)
    eroded = -F.max_pool2d(-road, k, stride=1, padding=radius_px)
    return (dilated - eroded).squeeze(1)


def ohem_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    threshold: float = 0.7,
    min_kept_fraction: float = 1.0 / 16,
    class_weights: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Online hard example mining cross-entropy.

    Keeps the pixels whose probability of the true class is below ``threshold``; when fewer
    than ``min_kept_fraction`` of the labelled pixels qualify, keeps that many of the hardest.

    Parameters
    ----------
    logits : Tensor
        ``(N, K, H, W)``.
    labels : Tensor
        ``(N, H, W)`` int64 in ``[0, K)`` or ``ignore_index``.
    threshold : float
        Pixels whose true-class probability is at most this are kept.
    min_kept_fraction : float
        Smallest fraction of the labelled pixels kept (at least one pixel).
    class_weights : Tensor, optional
        ``(K,)`` weights of the classes.
    ignore_index : int
        Label of pixels that do not count.

    Returns
    -------
    Tensor
        Scalar loss: the mean per-pixel cross-entropy of the kept pixels (0 when nothing is
        labelled).

    Examples
    --------
    Of two road pixels, one easy (p(road) = 0.88) and one hard (0.5), only the hard one
    counts, unless all labelled pixels must be kept:

    >>> logits = torch.tensor([[[[0.0, 0.0]], [[2.0, 0.0]]]])
    >>> labels = torch.tensor([[[1, 1]]])
    >>> round(float(ohem_cross_entropy(logits, labels)), 4)
    0.6931
    >>> round(float(ohem_cross_entropy(logits, labels, min_kept_fraction=1.0)), 4)
    0.41
    """
    pixel_loss = F.cross_entropy(logits, labels, weight=class_weights, ignore_index=ignore_index, reduction="none").flatten()
    valid = (labels != ignore_index).flatten()
    n_valid = int(valid.sum())
    if n_valid == 0:
        return logits.sum() * 0.0
    with torch.no_grad():
        prob = F.softmax(logits, dim=1)
        safe = labels.clamp(0, logits.shape[1] - 1).unsqueeze(1)
        true_prob = prob.gather(1, safe).flatten()
        true_prob = torch.where(valid, true_prob, torch.ones_like(true_prob))
        min_kept = max(1, min(n_valid, int(min_kept_fraction * n_valid)))
        kth = torch.kthvalue(true_prob, min_kept).values
        keep = valid & (true_prob <= torch.maximum(kth, torch.tensor(threshold, dtype=true_prob.dtype)))
    return pixel_loss[keep].sum() / keep.sum().clamp(min=1)


def body_loss(logits: Tensor, labels: Tensor, band: Tensor, class_weights: Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Cross-entropy of the body prediction, relaxed (ignored) on the boundary band.

    Parameters
    ----------
    logits : Tensor
        ``(N, K, H, W)`` logits of the body output.
    labels : Tensor
        ``(N, H, W)`` int64 in ``[0, K)`` or ``ignore_index``.
    band : Tensor
        ``(N, H, W)`` boundary band (:func:`boundary_band`); pixels where it is positive are
        ignored.
    class_weights : Tensor, optional
        ``(K,)`` weights of the classes.
    ignore_index : int
        Label of pixels that do not count.

    Returns
    -------
    Tensor
        Scalar mean cross-entropy over the labelled pixels off the band (0 when there are
        none).

    Examples
    --------
    >>> logits = torch.tensor([[[[0.0, 0.0]], [[2.0, 0.0]]]])
    >>> round(float(body_loss(logits, torch.tensor([[[1, 1]]]), torch.tensor([[[1.0, 0.0]]]))), 4)
    0.6931
    """
    relaxed = torch.where(band > 0, torch.full_like(labels, ignore_index), labels)
    if not bool((relaxed != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, relaxed, weight=class_weights, ignore_index=ignore_index)


def balanced_bce(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Class-balanced binary cross-entropy: positives weighted by the fraction of negatives.

    Parameters
    ----------
    logits, target : Tensor
        Same shape; target in ``{0, 1}``.
    valid : Tensor, optional
        Boolean, pixels that count (default: all).

    Returns
    -------
    Tensor
        Scalar: the weighted sum over the valid pixels divided by their count (negatives are
        weighted by the fraction of positives); 0 when no pixel is valid.

    Examples
    --------
    One positive of four: it weighs 3/4, each negative 1/4, and each pixel's loss is ln 2.

    >>> round(float(balanced_bce(torch.zeros(4), torch.tensor([1.0, 0.0, 0.0, 0.0]))), 4)
    0.2599
    """
    if valid is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    t = target[valid]
    if t.numel() == 0:
        return logits.sum() * 0.0
    pos = t.sum()
    neg = t.numel() - pos
    weight = torch.where(t > 0, neg / t.numel(), pos / t.numel())
    return F.binary_cross_entropy_with_logits(logits[valid], t, weight=weight, reduction="sum") / t.numel()


def soft_bce(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Binary cross-entropy with soft targets in ``[0, 1]``, averaged over the ``valid`` pixels.

    Its minimum is at ``sigmoid(logits) == target``: the prediction reproduces the target's
    shape (e.g. a ridge) instead of a thresholded band.

    Parameters
    ----------
    logits, target : Tensor
        Same shape; target in ``[0, 1]``.
    valid : Tensor, optional
        Boolean, pixels that count (default: all).

    Returns
    -------
    Tensor
        Scalar mean binary cross-entropy over the valid pixels (0 when none is valid).

    Examples
    --------
    >>> logits, target = torch.tensor([0.0, 2.0]), torch.tensor([0.5, 1.0])
    >>> round(float(soft_bce(logits, target)), 4)
    0.41
    >>> round(float(soft_bce(logits, target, torch.tensor([True, False]))), 4)
    0.6931
    """
    if valid is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[valid], target[valid])


def edge_attention_loss(
    logits: Tensor,
    labels: Tensor,
    edge_logits: Tensor,
    threshold: float = 0.8,
    class_weights: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Cross-entropy of the final prediction on pixels whose predicted edge probability > ``threshold``.

    Parameters
    ----------
    logits : Tensor
        ``(N, K, H, W)`` logits of the final output.
    labels : Tensor
        ``(N, H, W)`` int64 in ``[0, K)`` or ``ignore_index``.
    edge_logits : Tensor
        ``(N, 1, H, W)`` logits of the edge output (no gradient flows into them).
    threshold : float
        Edge probability above which a pixel counts.
    class_weights : Tensor, optional
        ``(K,)`` weights of the classes.
    ignore_index : int
        Label of pixels that do not count.

    Returns
    -------
    Tensor
        Scalar mean cross-entropy over the attended labelled pixels (0 when there are none).

    Examples
    --------
    Only the first pixel lies on a predicted edge:

    >>> logits = torch.tensor([[[[0.0, 0.0]], [[2.0, 0.0]]]])
    >>> edge_logits = torch.tensor([[[[5.0, -5.0]]]])
    >>> round(float(edge_attention_loss(logits, torch.tensor([[[1, 0]]]), edge_logits)), 4)
    0.1269
    """
    with torch.no_grad():
        attended = torch.sigmoid(edge_logits.squeeze(1)) > threshold
    masked = torch.where(attended, labels, torch.full_like(labels, ignore_index))
    if not bool((masked != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, masked, weight=class_weights, ignore_index=ignore_index)


def segmentation_losses(
    outputs: dict[str, Tensor],
    labels: Tensor,
    *,
    edges: Tensor | None = None,
    centerlines: Tensor | None = None,
    weights: LossWeights = LossWeights(),
    class_weights: Tensor | None = None,
    edge_radius_px: int = 2,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, Tensor]:
    """All loss terms a model's outputs call for, and their weighted sum ``total``.

    Parameters
    ----------
    outputs : dict of str to Tensor
        A model's logits: ``seg`` and optionally ``body``, ``edge``, ``centerline``.
    labels : Tensor
        ``(N, H, W)`` int64 labels (0 background, 1 road, ``ignore_index``).
    edges : Tensor, optional
        ``(N, H, W)`` float 0/1 edge ground truth, also the band the body loss ignores;
        derived from ``labels`` (:func:`boundary_band`) when absent.
    centerlines : Tensor, optional
        ``(N, H, W)`` float centerline target in ``[0, 1]`` (e.g. a Gaussian ridge); the
        centerline loss needs it.
    weights : LossWeights
        Weights of the terms.
    class_weights : Tensor, optional
        ``(K,)`` cross-entropy class weights.
    edge_radius_px : int
        Radius of the derived edge band.
    ignore_index : int
        Label of pixels that do not count.

    Returns
    -------
    dict of str to Tensor
        ``seg`` and, as applicable, ``body``, ``edge``, ``edge_attention``, ``centerline``
        (unweighted), plus ``total`` (weighted sum). The centerline term needs both the
        ``centerline`` output and ``centerlines``.

    Examples
    --------
    >>> outputs = {"seg": torch.zeros(1, 2, 1, 4), "edge": torch.zeros(1, 1, 1, 4)}
    >>> terms = segmentation_losses(outputs, torch.tensor([[[0, 0, 1, 1]]]), edge_radius_px=1)
    >>> {name: round(float(value), 4) for name, value in terms.items()}
    {'seg': 0.6931, 'edge': 0.3466, 'edge_attention': 0.0, 'total': 7.6246}
    """
    terms = {
        "seg": ohem_cross_entropy(
            outputs["seg"], labels, threshold=weights.ohem_threshold, min_kept_fraction=weights.min_kept_fraction,
            class_weights=class_weights, ignore_index=ignore_index,
        )
    }  # fmt: skip
    total = terms["seg"]
    valid = labels != ignore_index
    if "edge" in outputs or "body" in outputs:
        band = boundary_band(labels, edge_radius_px, ignore_index) if edges is None else edges
        if "body" in outputs:
            terms["body"] = body_loss(outputs["body"], labels, band, class_weights, ignore_index)
            total = total + weights.body * terms["body"]
        if "edge" in outputs:
            terms["edge"] = balanced_bce(outputs["edge"].squeeze(1), band, valid)
            terms["edge_attention"] = edge_attention_loss(
                outputs["seg"], labels, outputs["edge"], weights.edge_attention_threshold, class_weights, ignore_index
            )
            total = total + weights.edge * terms["edge"] + weights.edge_attention * terms["edge_attention"]
    if "centerline" in outputs and centerlines is not None:
        terms["centerline"] = soft_bce(outputs["centerline"].squeeze(1), centerlines, valid)
        total = total + weights.centerline * terms["centerline"]
    terms["total"] = total
    return terms
