"""Generated image sequences of moving objects with per-frame instance ground truth.

Training and benchmark data for the sequence model (:mod:`geoseg.sequence.model`): textured
vehicles (rotated rectangles with a windscreen band and a roof stripe) and vessels (ellipses
with a wake-like bright rim) move over a static background image, with

- constant velocity plus a slow turn, and a linear scale change (zoom/altitude drift);
- occlusion: objects have a fixed depth order, the front one hides the others where they
  overlap (the instance map holds only the visible part);
- leaving and re-entering the view: some objects drive out of the frame, turn around outside
  it and come back (the same id), which exercises re-identification;
- mild per-frame brightness flicker and sensor noise.

Each object has its own appearance (base colour, texture frequency and phase), fixed for the
sequence, so identities are visually distinguishable, as for real vehicles. The background is
any ``(3, H, W)`` uint8 image: the project's own synthetic scenes
(:func:`geoseg.synthetic.render_scene`) for tests and sample data, or crops of real imagery
for benchmarks. Everything is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geoseg.errors import ConfigError

__all__ = ["ObjectTrack", "SequenceSample", "make_sequence", "synthetic_background"]


@dataclass(frozen=True)
class ObjectTrack:
    """Trajectory and appearance of one generated object.

    Attributes
    ----------
    object_id : int
        Ground-truth identity (>= 1), the value of the object in the instance maps.
    shape : str
        ``"vehicle"`` (rotated rectangle) or ``"vessel"`` (ellipse).
    colour : numpy.ndarray
        Base RGB colour, float ``(3,)`` in 0..255.
    centres : numpy.ndarray
        ``(frames, 2)`` centre (x, y) in pixels (may lie outside the frame).
    angles : numpy.ndarray
        ``(frames,)`` heading in radians.
    half_sizes : numpy.ndarray
        ``(frames, 2)`` half length and half width in pixels.
    """

    object_id: int
    shape: str
    colour: np.ndarray
    centres: np.ndarray
    angles: np.ndarray
    half_sizes: np.ndarray
    stripe_freq: float = 2.0
    stripe_phase: float = 0.0


@dataclass(frozen=True)
class SequenceSample:
    """A generated sequence and its ground truth.

    Attributes
    ----------
    frames : numpy.ndarray
        uint8 ``(frames, 3, height, width)``.
    instances : numpy.ndarray
        int32 ``(frames, height, width)``: 0 background, else the visible object's id.
    objects : list of ObjectTrack
        The objects, in depth order (back to front).
    """

    frames: np.ndarray
    instances: np.ndarray
    objects: list[ObjectTrack] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        """Object ids."""
        return [o.object_id for o in self.objects]


def synthetic_background(height: int, width: int, seed: int = 0, gsd_m: float = 0.3) -> np.ndarray:
    """A background image from the project's own synthetic aerial scenes.

    Parameters
    ----------
    height, width : int
        Size in pixels (at least 32).
    seed : int
        Scene seed.
    gsd_m : float
        Ground sampling distance of the scene.

    Returns
    -------
    numpy.ndarray
        uint8 ``(3, height, width)``.
    """
    from geoseg.synthetic import render_scene

    scene = render_scene(max(height, 32), max(width, 32), gsd_m=gsd_m, seed=seed, car_density=0.0)
    return scene.image[:, :height, :width].copy()


def _trajectory(rng: np.random.Generator, n: int, h: int, w: int, leave: bool) -> tuple[np.ndarray, np.ndarray]:
    """Centres and headings: a slowly turning path; with ``leave``, out of the frame and back."""
    speed = rng.uniform(0.025, 0.05) * min(h, w)
    if leave:
        # Start near the middle, head to the nearest side, turn around outside and come back.
        start = np.array([w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)])
        heading = rng.choice([0.0, np.pi]) + rng.uniform(-0.3, 0.3)
        direction = np.array([np.cos(heading), np.sin(heading)])
        # Distance to the exit plus a margin so the object is fully outside for a few frames.
        out = (w - start[0]) if direction[0] > 0 else start[0]
        total = out / abs(direction[0]) + 0.4 * min(h, w)
        speed = max(speed, 2.0 * total / max(n - 1, 1))
        s = np.arange(n) * speed
        along = np.where(s <= total, s, 2 * total - s)  # there and back along the same line
        centres = start + along[:, None] * direction
        angles = np.where(s <= total, heading, heading + np.pi)
        return centres, angles
    start = np.array([w * rng.uniform(0.15, 0.85), h * rng.uniform(0.15, 0.85)])
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.uniform(-0.06, 0.06)
    angles = heading + turn * np.arange(n)
    steps = speed * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    centres = start + np.vstack([[0.0, 0.0], np.cumsum(steps[:-1], axis=0)])
    # Bounce off a margin so objects that should stay in view do.
    for axis, size in ((0, w), (1, h)):
        lo, hi = 0.1 * size, 0.9 * size
        c = centres[:, axis]
        c = np.where(c < lo, 2 * lo - c, c)
        c = np.where(c > hi, 2 * hi - c, c)
        centres[:, axis] = np.clip(c, 0, size)
    moves = np.diff(centres, axis=0)
    angles = np.concatenate([[angles[0]], np.arctan2(moves[:, 1], moves[:, 0])])
    return centres, angles


def _crossing(rng: np.random.Generator, n: int, h: int, w: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Two objects swapping sides: left-to-right (side 0) and right-to-left (side 1)."""
    y = h * (0.5 + (0.12 if side == 0 else -0.12))
    x0, x1 = (0.15 * w, 0.85 * w) if side == 0 else (0.85 * w, 0.15 * w)
    xs = np.linspace(x0, x1, n)
    centres = np.stack([xs, np.full(n, y) + rng.uniform(-1, 1, n)], axis=1)
    angles = np.full(n, 0.0 if side == 0 else np.pi)
    return centres, angles


def _object_coords(obj: ObjectTrack, t: int, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cx, cy = obj.centres[t]
    a = obj.angles[t]
    hl, hw = obj.half_sizes[t]
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    u = (dx * np.cos(a) + dy * np.sin(a)) / hl
    v = (-dx * np.sin(a) + dy * np.cos(a)) / hw
    return u, v


def _render_object(obj: ObjectTrack, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]] | None:
    """Coverage mask and RGB of object ``obj`` at frame ``t`` inside its bounding window."""
    cx, cy = obj.centres[t]
    r = float(np.max(obj.half_sizes[t])) + 2
    r0, r1 = max(int(cy - r), 0), min(int(cy + r) + 1, h)
    c0, c1 = max(int(cx - r), 0), min(int(cx + r) + 1, w)
    if r0 >= r1 or c0 >= c1:
        return None
    ys, xs = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    u, v = _object_coords(obj, t, ys, xs)
    if obj.shape == "vehicle":
        inside = (np.abs(u) <= 1) & (np.abs(v) <= 1)
        shade = 1.0 + 0.18 * np.sin(2 * np.pi * obj.stripe_freq * v + obj.stripe_phase)
        shade = np.where((u > 0.35) & (u < 0.6), 0.35, shade)  # dark windscreen band
        shade = np.where(np.abs(u) > 0.9, shade * 0.75, shade)
    else:
        rr = u**2 + v**2
        inside = rr <= 1
        shade = 1.0 + 0.2 * np.sin(2 * np.pi * obj.stripe_freq * u + obj.stripe_phase)
        shade = np.where(rr > 0.7, 1.35, shade)  # bright rim
        shade = np.where((np.abs(v) < 0.25) & (u > -0.5) & (u < 0.4), shade * 0.7, shade)  # deck house
    if not inside.any():
        return None
    rgb = np.clip(obj.colour[:, None, None] * shade[None], 0, 255)
    return inside, rgb, (slice(r0, r1), slice(c0, c1))


def make_sequence(
    background: np.ndarray,
    n_frames: int,
    *,
    n_objects: int = 3,
    seed: int = 0,
    leave_and_return: int = 1,
    crossing: bool = False,
    size_range_px: tuple[float, float] = (7.0, 12.0),
    scale_drift: float = 0.25,
    noise: float = 4.0,
) -> SequenceSample:
    """Generate a sequence of moving textured objects over ``background``.

    Parameters
    ----------
    background : numpy.ndarray
        uint8 ``(3, height, width)`` background (the frame size).
    n_frames : int
        Number of frames (at least 2).
    n_objects : int
        Number of objects (ids ``1..n_objects``).
    seed : int
        Seed of all random choices.
    leave_and_return : int
        How many of the objects leave the view and come back.
    crossing : bool
        When True, objects 1 and 2 swap sides on crossing paths (the others move freely).
    size_range_px : tuple of float
        Range of the objects' half length in pixels at the first frame.
    scale_drift : float
        Largest relative scale change over the sequence (zoom drift), e.g. 0.25 = ±25 %.
    noise : float
        Standard deviation of the per-pixel sensor noise (grey levels).

    Returns
    -------
    SequenceSample

    Raises
    ------
    ConfigError
        Background not ``(3, H, W)`` uint8-like, fewer than 2 frames or no objects.
    """
    bg = np.asarray(background)
    if bg.ndim != 3 or bg.shape[0] != 3 or min(bg.shape[1:]) < 16:
        raise ConfigError(f"background must be (3, H, W) with H, W >= 16, got {bg.shape}")
    if n_frames < 2 or n_objects < 1 or (crossing and n_objects < 2):
        raise ConfigError(f"need at least 2 frames and 1 object (2 with crossing), got {n_frames} frames, {n_objects} objects")
    rng = np.random.default_rng(seed)
    _, h, w = bg.shape
    objects: list[ObjectTrack] = []
    hues = rng.permutation(n_objects) / n_objects + rng.uniform(0, 1)
    for k in range(n_objects):
        if crossing and k < 2:
            centres, angles = _crossing(rng, n_frames, h, w, k)
        else:
            centres, angles = _trajectory(rng, n_frames, h, w, leave=k >= n_objects - leave_and_return and not (crossing and k < 2))
        half_len = rng.uniform(*size_range_px)
        aspect = rng.uniform(0.4, 0.6)
        drift = 1 + rng.uniform(-scale_drift, scale_drift) * np.linspace(0, 1, n_frames)
        half_sizes = np.stack([half_len * drift, half_len * aspect * drift], axis=1)
        hue = hues[k] % 1.0
        colour = 255 * np.clip(0.55 + 0.4 * np.cos(2 * np.pi * (hue + np.array([0, 1 / 3, 2 / 3]))), 0.05, 1)
        objects.append(
            ObjectTrack(
                object_id=k + 1,
                shape=str(rng.choice(["vehicle", "vessel"])),
                colour=colour,
                centres=centres,
                angles=angles,
                half_sizes=half_sizes,
                stripe_freq=float(rng.uniform(1.0, 3.0)),
                stripe_phase=float(rng.uniform(0, 2 * np.pi)),
            )
        )
    frames = np.empty((n_frames, 3, h, w), np.uint8)
    instances = np.zeros((n_frames, h, w), np.int32)
    base = bg.astype(np.float64)
    for t in range(n_frames):
        img = base * rng.uniform(0.93, 1.07)
        for obj in objects:  # back to front: later objects occlude earlier ones
            drawn = _render_object(obj, t, h, w)
            if drawn is None:
                continue
            inside, rgb, (rs, cs) = drawn
            win = img[:, rs, cs]
            win[:, inside] = rgb[:, inside]
            instances[t, rs, cs][inside] = obj.object_id
        img += rng.normal(0, noise, img.shape)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return SequenceSample(frames=frames, instances=instances, objects=objects)
