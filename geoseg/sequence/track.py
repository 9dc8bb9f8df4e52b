"""Track memory and Hungarian association of detections to tracks.

Re-identification by embedding matching as in OVS-Net (arXiv 1905.10064), which links each
frame's detections to earlier objects by their re-identification embeddings. Here the cost of
pairing detection *i* with track *j* is

``w_embed * (1 - cos(e_i, m_j)) + w_iou * (1 - IoU(box_i, predicted box_j)) + w_dist * min(1, d_ij / gate)``

for tracks seen in the last ``recent_frames`` frames (``d_ij``: distance of the detection's
centre to the track's predicted centre; ``gate``: ``gate_px`` times the frames since the track
was seen), and the embedding term alone for *lost* tracks (not seen for longer, up to
``memory_frames`` frames: objects that left the view or were hidden), so an object that
re-enters gets its old id back. Pairs above ``max_cost`` (or beyond the distance
gate / below the re-identification similarity) are not allowed; the assignment minimising the
total cost is found with :func:`scipy.optimize.linear_sum_assignment` (Hungarian algorithm).
The memory embedding of a track is an exponential moving average of its (unit) embeddings.

What differs from the paper: the IoU/centre-distance terms and the memory horizon are our
additions for aerial sequences (small, similar-looking objects); the paper matches embeddings
only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["Track", "TrackMemory", "TrackingParams", "box_iou"]

_FORBIDDEN = 1e6


@dataclass
class TrackingParams:
    """Association settings.

    Attributes
    ----------
    w_embed, w_iou, w_dist : float
        Weights of the cost terms (see module docstring).
    gate_px : float
        Centre distance (pixels) beyond which a track of the previous frame cannot match.
    max_cost : float
        Largest cost of an accepted pair.
    reid_similarity : float
        Smallest cosine similarity to re-identify a lost track.
    recent_frames : int
        Tracks last seen at most this many frames ago are matched with all cost terms (the
        distance gate grows with the gap); older ones by embedding only (re-identification).
    memory_frames : int
        Frames a lost track is kept for re-identification.
    ema : float
        Weight of the old memory embedding in the update.
    """

    w_embed: float = 1.0
    w_iou: float = 0.5
    w_dist: float = 0.5
    gate_px: float = 24.0
    max_cost: float = 1.2
    reid_similarity: float = 0.6
    recent_frames: int = 3
    memory_frames: int = 30
    ema: float = 0.7


@dataclass
class Track:
    """One tracked object.

    Attributes
    ----------
    track_id : int
        Persistent id (>= 1).
    embedding : numpy.ndarray
        Unit memory embedding.
    centre : numpy.ndarray
        Last centre (x, y) in pixels.
    velocity : numpy.ndarray
        Centre motion per frame (pixels).
    half_size : numpy.ndarray
        Last box half width/height (pixels).
    last_frame : int
        Last frame the object was seen.
    mask : numpy.ndarray or None
        Last mask (bool, frame size).
    """

    track_id: int
    embedding: np.ndarray
    centre: np.ndarray
    half_size: np.ndarray
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    mask: np.ndarray | None = None

    def predicted_centre(self, frame: int) -> np.ndarray:
        """Centre extrapolated to ``frame`` with the track's velocity."""
        return self.centre + self.velocity * (frame - self.last_frame)

    def predicted_box(self, frame: int) -> np.ndarray:
        """``(x0, y0, x1, y1)`` box at ``frame``."""
        c = self.predicted_centre(frame)
        return np.concatenate([c - self.half_size, c + self.half_size])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (``(N, 4)``) and ``b`` (``(M, 4)``), ``(x0, y0, x1, y1)``; returns ``(N, M)``."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


class TrackMemory:
    """Tracks of a sequence, with Hungarian association and re-identification.

    Parameters
    ----------
    params : TrackingParams, optional
        Association settings.
    """

    def __init__(self, params: TrackingParams | None = None) -> None:
        self.params = params or TrackingParams()
        self.tracks: list[Track] = []
        self._next_id = 1

    def active(self, frame: int) -> list[Track]:
        """Tracks seen in the frame before ``frame``."""
        return [t for t in self.tracks if t.last_frame == frame - 1]

    def new_track(
        self, frame: int, embedding: np.ndarray, centre: np.ndarray, half_size: np.ndarray, mask: np.ndarray | None = None, track_id: int | None = None
    ) -> Track:
        """Start a track (a fresh id unless ``track_id`` is given)."""
        tid = self._next_id if track_id is None else int(track_id)
        self._next_id = max(self._next_id, tid + 1)
        track = Track(tid, _unit(np.asarray(embedding, float)), np.asarray(centre, float), np.asarray(half_size, float), frame, mask=mask)
        self.tracks.append(track)
        return track

    def cost_matrix(self, frame: int, embeddings: np.ndarray, centres: np.ndarray, half_sizes: np.ndarray) -> tuple[np.ndarray, list[Track]]:
        """Cost of pairing each detection with each track in memory (see module docstring).

        Returns
        -------
        cost : numpy.ndarray
            ``(detections, tracks)``; forbidden pairs hold a large value.
        tracks : list of Track
            The candidate tracks (columns).
        """
        p = self.params
        self.tracks = [t for t in self.tracks if frame - t.last_frame <= p.memory_frames]
        cands = [t for t in self.tracks if t.last_frame < frame]
        n, m = len(embeddings), len(cands)
        cost = np.full((n, m), _FORBIDDEN)
        if n == 0 or m == 0:
            return cost, cands
        emb = np.asarray(embeddings, float).reshape(n, -1)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
        mem = np.stack([t.embedding for t in cands])
        sim = emb @ mem.T
        centres = np.asarray(centres, float).reshape(n, 2)
        boxes = np.concatenate([centres - half_sizes, centres + half_sizes], axis=1)
        for j, t in enumerate(cands):
            gap = frame - t.last_frame
            if gap <= p.recent_frames:
                gate = p.gate_px * gap
                d = np.linalg.norm(centres - t.predicted_centre(frame), axis=1)
                iou = box_iou(boxes, t.predicted_box(frame)[None])[:, 0]
                c = p.w_embed * (1 - sim[:, j]) + p.w_iou * (1 - iou) + p.w_dist * np.minimum(1.0, d / gate)
                c[d > gate] = _FORBIDDEN
            else:
                c = p.w_embed * (1 - sim[:, j])
                c[sim[:, j] < p.reid_similarity] = _FORBIDDEN
            c[c > p.max_cost] = _FORBIDDEN
            cost[:, j] = c
        return cost, cands

    def associate(self, frame: int, embeddings: np.ndarray, centres: np.ndarray, half_sizes: np.ndarray) -> list[Track | None]:
        """Assign detections of ``frame`` to tracks (Hungarian); ``None`` for unmatched detections.

        Does not update the tracks: call :meth:`update` (or :meth:`new_track`) with the
        final masks.
        """
        cost, cands = self.cost_matrix(frame, embeddings, centres, np.asarray(half_sizes, float).reshape(-1, 2))
        out: list[Track | None] = [None] * len(embeddings)
        if cost.size:
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < _FORBIDDEN:
                    out[r] = cands[c]
        return out

    def update(self, track: Track, frame: int, embedding: np.ndarray, centre: np.ndarray, half_size: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Record that ``track`` was seen at ``frame``."""
        centre = np.asarray(centre, float)
        if track.last_frame == frame - 1:
            track.velocity = 0.5 * track.velocity + 0.5 * (centre - track.centre)
        else:
            track.velocity = np.zeros(2)
        track.centre = centre
        track.half_size = np.asarray(half_size, float)
        track.embedding = _unit(self.params.ema * track.embedding + (1 - self.params.ema) * _unit(np.asarray(embedding, float)))
        track.last_frame = frame
        if mask is not None:
            track.mask = mask
