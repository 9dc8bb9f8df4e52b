"""Segment and track objects through a sequence with the one-pass model.

Per frame (OVS-Net, arXiv 1905.10064: detection, segmentation and re-identification from one
shared pass; what differs is listed in :mod:`geoseg.sequence.model` and
:mod:`geoseg.sequence.track`):

1. one pass of the shared encoder gives the centre heatmap, box sizes and embedding map;
2. detections are the heatmap's local maxima above ``score_threshold``; each gets an
   embedding pooled over its box (Gaussian weights);
3. detections are assigned to the track memory (Hungarian; embedding + IoU + centre distance
   for tracks of the previous frame, embedding only for lost tracks = re-identification);
4. each object query runs the mask head with its prior: the matched track's previous mask
   moved to the detection (mask-guided attention), else the detection's box; tracks of the
   previous frame left without a detection are propagated with their previous mask moved by
   their velocity, for at most ``max_coast`` frames, and kept when the mask head still finds
   the object;
5. overlapping masks are resolved (duplicates suppressed by mask IoU, then each pixel goes to
   the most probable object); unmatched detections start new tracks (when ``discover``).

Optional first-frame masks (semi-supervised mode) start the tracks with the given ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from geoseg.sequence.model import STRIDE
from geoseg.sequence.modelfile import SequenceModel
from geoseg.sequence.track import Track, TrackingParams, TrackMemory
from geoseg.sequence.train import box_prior, mask_box, shift_mask

__all__ = ["InferenceParams", "ObjectMask", "instance_maps", "segment_sequence", "segment_sequence_baseline"]


@dataclass
class InferenceParams:
    """Settings of :func:`segment_sequence`.

    Attributes
    ----------
    score_threshold : float
        Smallest centre-heatmap score of a detection.
    mask_threshold : float
        Mask probability threshold.
    max_objects : int
        Most detections per frame.
    min_area_px : int
        Smallest object mask kept.
    max_coast : int
        Frames a track is propagated without a detection.
    discover : bool
        Start tracks from unmatched detections (False: only the first-frame masks are tracked).
    use_prior : bool
        Give matched tracks their previous mask as the attention prior (False: always the box).
    tracking : TrackingParams
        Association settings.
    """

    score_threshold: float = 0.3
    mask_threshold: float = 0.5
    max_objects: int = 20
    min_area_px: int = 8
    max_coast: int = 2
    discover: bool = True
    use_prior: bool = True
    tracking: TrackingParams = field(default_factory=TrackingParams)


@dataclass
class ObjectMask:
    """One object in one frame."""

    frame: int
    track_id: int
    score: float
    mask: np.ndarray


@dataclass
class _Query:
    prior: np.ndarray
    score: float
    priority: int  # 0 matched track, 1 propagated track, 2 new detection
    track: Track | None = None
    centre: np.ndarray | None = None
    half: np.ndarray | None = None


def _pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def _detect(feats: dict[str, torch.Tensor], h: int, w: int, p: InferenceParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (x, y), box half sizes and scores of the heatmap's local maxima."""
    heat = torch.sigmoid(feats["heat"])[0, 0]
    peaks = (heat == F.max_pool2d(heat[None, None], 3, 1, 1)[0, 0]) & (heat >= p.score_threshold)
    rr, cc = torch.nonzero(peaks, as_tuple=True)
    scores = heat[rr, cc]
    order = torch.argsort(scores, descending=True)[: p.max_objects]
    rr, cc, scores = rr[order], cc[order], scores[order]
    stride = feats["f1"].shape[-1] * 2 // heat.shape[1]  # f1 is at 1/2 of the padded input
    centres = np.stack([(cc.numpy() + 0.5) * stride, (rr.numpy() + 0.5) * stride], axis=1).astype(float)
    halves = torch.exp(feats["size"][0][:, rr, cc]).T.numpy().astype(float).reshape(-1, 2)
    inside = (centres[:, 0] < w) & (centres[:, 1] < h)
    return centres[inside], halves[inside], scores.numpy()[inside].astype(float)


def _pool_box(embed: torch.Tensor, centre: np.ndarray, half: np.ndarray, stride: int) -> np.ndarray:
    gh, gw = embed.shape[-2:]
    gy, gx = np.mgrid[0:gh, 0:gw]
    gx = (gx + 0.5) * stride
    gy = (gy + 0.5) * stride
    s = np.maximum(half * 0.6, 2.0)
    wgt = np.exp(-(((gx - centre[0]) / s[0]) ** 2 + ((gy - centre[1]) / s[1]) ** 2) / 2)
    v = (embed * torch.from_numpy(wgt.astype(np.float32))).sum((1, 2)) / float(wgt.sum())
    return F.normalize(v, dim=0).numpy()


def _pool_mask(embed: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    wgt = F.adaptive_avg_pool2d(torch.from_numpy(mask.astype(np.float32))[None, None], (embed.shape[-2], embed.shape[-1]))[0, 0]
    v = (embed * wgt).sum((1, 2)) / wgt.sum().clamp(min=1e-6)
    return F.normalize(v, dim=0).numpy()


def _run_masks(model: SequenceModel, feats: dict[str, torch.Tensor], priors: list[np.ndarray], h: int, w: int) -> np.ndarray:
    if not priors:
        return np.zeros((0, h, w), np.float32)
    prior = _pad(torch.from_numpy(np.stack(priors).astype(np.float32))[:, None])
    logits, _, _ = model.module.masks(feats, torch.zeros(len(priors), dtype=torch.long), prior)
    return torch.sigmoid(logits)[:, 0, :h, :w].numpy()


def _resolve(probs: np.ndarray, queries: list[_Query], p: InferenceParams) -> list[tuple[_Query, np.ndarray, float]]:
    """Suppress duplicate masks (IoU > 0.5, the higher priority/score kept), give each pixel to one object."""
    masks = probs >= p.mask_threshold
    order = sorted(range(len(queries)), key=lambda i: (queries[i].priority, -queries[i].score))
    kept: list[int] = []
    for i in order:
        if masks[i].sum() < p.min_area_px:
            continue
        dup = False
        for j in kept:
            inter = (masks[i] & masks[j]).sum()
            if inter / max(min(masks[i].sum(), masks[j].sum()), 1) > 0.5:
                dup = True
                break
        if not dup:
            kept.append(i)
    if not kept:
        return []
    stack = np.where(masks[kept], probs[kept], 0.0)
    owner = np.argmax(stack, axis=0)
    fg = stack.max(axis=0) > 0
    out = []
    for k, i in enumerate(kept):
        m = fg & (owner == k)
        if m.sum() >= p.min_area_px:
            out.append((queries[i], m, float(probs[i][m].mean())))
    return out


@torch.no_grad()
def segment_sequence(
    model: SequenceModel,
    frames: Sequence[np.ndarray],
    *,
    first_masks: np.ndarray | None = None,
    params: InferenceParams | None = None,
) -> list[list[ObjectMask]]:
    """Segment and track the objects of a sequence (see module docstring).

    Parameters
    ----------
    model : SequenceModel
        A trained model.
    frames : sequence of numpy.ndarray
        ``(bands, H, W)`` frames of one size, in time order.
    first_masks : numpy.ndarray, optional
        ``(H, W)`` integer label image of the first frame (0 background, else track ids):
        these objects are tracked with these ids.
    params : InferenceParams, optional
        Settings.

    Returns
    -------
    list of list of ObjectMask
        Per frame, the objects found (non-overlapping masks).
    """
    p = params or InferenceParams()
    memory = TrackMemory(p.tracking)
    coast: dict[int, int] = {}
    results: list[list[ObjectMask]] = []
    for f, image in enumerate(frames):
        h, w = image.shape[-2:]
        feats = model.module.features(_pad(model.normalise(image)))
        embed = feats["embed"][0]
        stride = feats["f1"].shape[-1] * 2 // embed.shape[-1]
        centres, halves, scores = _detect(feats, h, w, p)
        pooled = [_pool_box(embed, c, s, stride) for c, s in zip(centres, halves)]
        det_emb = np.stack(pooled) if pooled else np.zeros((0, embed.shape[0]), np.float32)  # a frame may have no detection
        frame_out: list[ObjectMask] = []
        queries: list[_Query] = []
        if f == 0 and first_masks is not None:
            given = np.asarray(first_masks)
            for tid in [int(v) for v in np.unique(given) if v > 0]:
                m = given == tid
                c, half = mask_box(m)
                memory.new_track(0, _pool_mask(embed, m), c, half, mask=m, track_id=tid)
                frame_out.append(ObjectMask(0, tid, 1.0, m))
            covered = given > 0
            keep = [i for i, c in enumerate(centres) if not covered[min(int(c[1]), h - 1), min(int(c[0]), w - 1)]]
            if p.discover:
                queries += [_Query(box_prior(h, w, centres[i], halves[i]), scores[i], 2, None, centres[i], halves[i]) for i in keep]
        else:
            assigned = memory.associate(f, det_emb, centres, halves) if len(centres) else []
            matched = set()
            for i, tr in enumerate(assigned):
                if tr is not None:
                    matched.add(tr.track_id)
                if tr is not None and p.use_prior and tr.last_frame == f - 1 and tr.mask is not None:
                    prior = shift_mask(tr.mask, *(centres[i] - tr.centre)).astype(np.float32)
                    queries.append(_Query(prior, scores[i], 0, tr, centres[i], halves[i]))
                elif tr is not None:
                    queries.append(_Query(box_prior(h, w, centres[i], halves[i]), scores[i], 0, tr, centres[i], halves[i]))
                elif p.discover:
                    queries.append(_Query(box_prior(h, w, centres[i], halves[i]), scores[i], 2, None, centres[i], halves[i]))
            for tr in memory.active(f):
                if tr.track_id in matched or tr.mask is None or coast.get(tr.track_id, 0) >= p.max_coast:
                    continue
                prior = shift_mask(tr.mask, *tr.velocity).astype(np.float32)
                if prior.sum() >= p.min_area_px:
                    queries.append(_Query(prior, 0.0, 1, tr))
        probs = _run_masks(model, feats, [q.prior for q in queries], h, w)
        given_px = (np.asarray(first_masks) > 0) if f == 0 and first_masks is not None else None
        for q, m, score in _resolve(probs, queries, p):
            if given_px is not None:  # the given first-frame objects keep their pixels
                m = m & ~given_px
                if m.sum() < p.min_area_px:
                    continue
            if q.priority == 1 and q.track is not None and q.track.mask is not None and m.sum() < 0.4 * q.track.mask.sum():
                continue  # propagated track whose object the mask head no longer finds
            c, half = mask_box(m)
            emb = _pool_mask(embed, m)
            if q.track is not None:
                memory.update(q.track, f, emb, c, half, mask=m)
                coast[q.track.track_id] = coast.get(q.track.track_id, 0) + 1 if q.priority == 1 else 0
                tid = q.track.track_id
            else:
                tid = memory.new_track(f, emb, c, half, mask=m).track_id
            frame_out.append(ObjectMask(f, tid, q.score if q.priority != 1 else score, m))
        results.append(frame_out)
    return results


@torch.no_grad()
def segment_sequence_baseline(
    model: SequenceModel, frames: Sequence[np.ndarray], *, params: InferenceParams | None = None, gate_px: float = 24.0
) -> list[list[ObjectMask]]:
    """Baseline: per-frame instance segmentation + nearest-centroid linking.

    Each frame is segmented on its own (detections, box priors, the same mask head; no track
    prior, no embeddings), and each object takes the id of the nearest object centroid of
    the previous frame within ``gate_px`` (greedy, closest pairs first), else a new id.
    """
    p = params or InferenceParams()
    results: list[list[ObjectMask]] = []
    prev: list[tuple[int, np.ndarray]] = []
    next_id = 1
    for f, image in enumerate(frames):
        h, w = image.shape[-2:]
        feats = model.module.features(_pad(model.normalise(image)))
        centres, halves, scores = _detect(feats, h, w, p)
        queries = [_Query(box_prior(h, w, c, s), sc, 2) for c, s, sc in zip(centres, halves, scores)]
        probs = _run_masks(model, feats, [q.prior for q in queries], h, w)
        objs = [(m, score) for _, m, score in _resolve(probs, queries, p)]
        cents = [np.argwhere(m).mean(axis=0)[::-1] for m, _ in objs]
        pairs = sorted((float(np.linalg.norm(c - pc)), i, j) for i, c in enumerate(cents) for j, (_, pc) in enumerate(prev))
        ids: dict[int, int] = {}
        used = set()
        for d, i, j in pairs:
            if d <= gate_px and i not in ids and j not in used:
                ids[i] = prev[j][0]
                used.add(j)
        out = []
        for i, (m, score) in enumerate(objs):
            if i not in ids:
                ids[i] = next_id
                next_id += 1
            out.append(ObjectMask(f, ids[i], score, m))
        next_id = max([next_id, *[o.track_id + 1 for o in out]])
        prev = [(ids[i], cents[i]) for i in range(len(objs))]
        results.append(out)
    return results


def instance_maps(results: list[list[ObjectMask]], shape: tuple[int, int]) -> np.ndarray:
    """Per-frame label images ``(frames, H, W)`` (0 background, else track id) of :func:`segment_sequence` results."""
    out = np.zeros((len(results), *shape), np.int32)
    for f, objs in enumerate(results):
        for o in objs:
            out[f][o.mask] = o.track_id
    return out
