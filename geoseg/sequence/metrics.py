"""Scores of sequence segmentation against ground truth: J, F (DAVIS) and identity switches.

- **J** (region similarity): the IoU of a ground-truth object's mask with the mask of the
  predicted track assigned to it. Predicted tracks are assigned to ground-truth objects once
  per sequence (Hungarian, maximising the summed per-frame IoU), as in the unsupervised DAVIS
  protocol (Pont-Tuset et al., arXiv 1704.00675); an object without a track scores 0. J of an
  object is averaged over the frames where it is visible, then over objects.
- **F** (contour accuracy): the boundary F-measure of the same pairs: precision and recall of
  boundary pixels within a tolerance of ``max(1, round(0.008 * image diagonal))`` pixels
  (DAVIS's default tolerance), averaged like J.
- **ID switches** (CLEAR-MOT, Bernardin & Stiefelhagen 2008): per frame, ground-truth objects
  are matched to predicted objects with IoU >= 0.5 (Hungarian); a switch is counted when an
  object is matched to another track id than at its previous match (this includes an object
  that re-enters the view under a new id).

What differs from DAVIS: frames where a ground-truth object is not visible are left out of its
J and F (DAVIS scores them 1 when the prediction is empty too).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion
from scipy.optimize import linear_sum_assignment

__all__ = ["boundary_f", "sequence_scores"]


def _boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~binary_erosion(mask, border_value=0)


def boundary_f(pred: np.ndarray, gt: np.ndarray, tolerance: int | None = None) -> float:
    """Boundary F-measure of two boolean masks (see module docstring)."""
    if tolerance is None:
        tolerance = max(1, round(0.008 * float(np.hypot(*gt.shape))))
    bp, bg = _boundary(pred), _boundary(gt)
    if not bg.any() and not bp.any():
        return 1.0
    if not bg.any() or not bp.any():
        return 0.0
    disk = np.add.outer(np.arange(-tolerance, tolerance + 1) ** 2, np.arange(-tolerance, tolerance + 1) ** 2) <= tolerance**2
    precision = (bp & binary_dilation(bg, disk)).sum() / bp.sum()
    recall = (bg & binary_dilation(bp, disk)).sum() / bg.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def sequence_scores(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """J mean, F mean, ID switches and matched fraction of one sequence.

    Parameters
    ----------
    gt, pred : numpy.ndarray
        ``(frames, H, W)`` integer label images (0 = background, else object/track id).

    Returns
    -------
    dict
        ``J``, ``F``, ``id_switches``, ``matched`` (fraction of visible ground-truth object
        instances matched with IoU >= 0.5), ``objects``.
    """
    gt_ids = [int(v) for v in np.unique(gt) if v > 0]
    pr_ids = [int(v) for v in np.unique(pred) if v > 0]
    frames = range(gt.shape[0])
    visible = {g: [t for t in frames if (gt[t] == g).any()] for g in gt_ids}
    score = np.zeros((len(gt_ids), len(pr_ids)))
    for gi, g in enumerate(gt_ids):
        for t in visible[g]:
            gm = gt[t] == g
            for pj in np.unique(pred[t][gm]):
                if pj > 0:
                    score[gi, pr_ids.index(int(pj))] += _iou(gm, pred[t] == pj)
        score[gi] /= max(len(visible[g]), 1)
    assigned: dict[int, int] = {}
    if score.size:
        rows, cols = linear_sum_assignment(-score)
        assigned = {gt_ids[r]: pr_ids[c] for r, c in zip(rows, cols) if score[r, c] > 0}
    js, fs = [], []
    for g in gt_ids:
        p = assigned.get(g)
        jv = [(_iou(gt[t] == g, pred[t] == p) if p is not None else 0.0) for t in visible[g]]
        fv = [(boundary_f(pred[t] == p, gt[t] == g) if p is not None else 0.0) for t in visible[g]]
        js.append(np.mean(jv))
        fs.append(np.mean(fv))
    switches, matched, total = 0, 0, 0
    last: dict[int, int] = {}
    for t in frames:
        g_here = [g for g in gt_ids if (gt[t] == g).any()]
        p_here = [int(v) for v in np.unique(pred[t]) if v > 0]
        total += len(g_here)
        if not g_here or not p_here:
            continue
        iou = np.array([[_iou(gt[t] == g, pred[t] == p) for p in p_here] for g in g_here])
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] >= 0.5:
                g, p = g_here[r], p_here[c]
                matched += 1
                if g in last and last[g] != p:
                    switches += 1
                last[g] = p
    return {
        "J": float(np.mean(js)) if js else float("nan"),
        "F": float(np.mean(fs)) if fs else float("nan"),
        "id_switches": int(switches),
        "matched": matched / total if total else float("nan"),
        "objects": len(gt_ids),
    }
