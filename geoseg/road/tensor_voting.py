"""Steerable 2-D tensor voting on a road mask or road-probability map.

Stage 2 of Cheng, Zhu, Xiang, Pan, "Road centerline extraction via semisupervised segmentation
and multidirection nonmaximum suppression" (arXiv 1508.06163; Neurocomputing 2016): the road
segmentation is densified by tensor voting so that a smooth saliency ridge runs along each road,
bridges small gaps (cars, tree shadows) and can be thinned by non-maximum suppression
(:mod:`geoseg.road.nms`).

Tensor voting is Medioni, Lee, Tang, "A Computational Framework for Segmentation and Grouping"
(Elsevier 2000). The fast evaluation follows Franken, van Almsick, Rongen, Florack,
ter Haar Romeny, "An efficient method for tensor voting using steerable filters", ECCV 2006:
the stick voting field is expanded in circular harmonics, so voting with every voter's own
orientation becomes a handful of complex convolutions with fixed kernels, done by FFT at a
cost independent of the scale.

Tensor representation
---------------------
A symmetric 2×2 tensor ``T = [[a, b], [b, c]]`` is stored as ``U0 = a + c`` (real) and
``U2 = (a - c) + 2ib`` (complex, "orientation doubled"). A unit stick tensor along angle ``θ``
is ``U0 = 1, U2 = exp(2iθ)``. Then ``λ1 - λ2 = |U2|``, ``λ1 + λ2 = U0`` and the first
eigenvector has angle ``arg(U2) / 2``.

Angles are in radians in pixel space (see ``docs/CONVENTIONS.md``): direction
``(dx, dy) = (cos θ, sin θ)`` with ``x`` = column and ``y`` = row (so positive angles turn
from the +column axis towards +row, i.e. clockwise on screen). Orientations are modulo π and
returned in ``(-π/2, π/2]``.

Voting field (shared by :func:`tensor_voting` and :func:`tensor_voting_direct`)
-----------------------------------------------------------------------------
A stick voter of weight ``s`` and orientation ``β`` at pixel ``y`` casts on the receiver
``x = y + d``, ``d = r (cos φ, sin φ)``, ``0 < r ≤ truncate·σ``, the stick tensor

    ``s · exp(-r² / 2σ²) · cos^{2n}(φ - β)``  along angle ``2φ - β``

(the tangent at ``x`` of the circle through ``y`` tangent to ``β``, i.e. Medioni's osculating
circle). In the doubled representation the vote is ``U0 = s g(r) cos^{2n}(φ-β)``,
``U2 = s g(r) cos^{2n}(φ-β) exp(i(4φ - 2β))``. Expanding
``cos^{2n}ψ = Σ_{m=-n..n} c_m exp(2imψ)``, ``c_m = C(2n, n-m) / 4^n``, gives

    ``U0 = Σ_m c_m w_{2m} ⊛ (s e^{-2imβ})``,  ``U2 = Σ_m c_m w_{2m+4} ⊛ (s e^{-2i(m+1)β})``

with the fixed kernels ``w_k(d) = exp(-r²/2σ²) exp(ikφ)`` (zero at ``d = 0`` and beyond the
truncation radius). Each voter also keeps its own tensor (``U0 += s``,
``U2 += s e^{2iβ}``). Ball voting (a voter without orientation, the average of the stick
field over ``β``) reduces to ``U2 = c_1 w_2 ⊛ s``; it gives the initial orientations.

Pipeline: when ``orientation`` is not given, one ball-voting pass (one convolution) gives each
pixel's orientation ``β = arg(w_2 ⊛ s) / 2`` and stickness ``|c_1 w_2 ⊛ s|``; as in Medioni's
second pass, the stick voters then have the weight ``s`` times that stickness (normalised to 1
on an infinite axis-aligned unit line), which concentrates the votes of a wide band on its
axis, so a gap or a dead end of a band is prolonged by one ridge rather than one per band
edge. With ``orientation`` given, the voters have weight ``s`` and that orientation. Outputs are divided by the saliency that an infinite,
axis-aligned, one-pixel-wide line of weight 1 gets on itself
(``1 + Σ_{k≠0, |k|≤truncate·σ} exp(-k²/2σ²)``), so values are comparable across σ.

Differences from the papers
---------------------------
* The field is Franken et al.'s steerable ``exp(-r²/2σ²) cos^{2n}φ`` field, not Medioni's
  ``exp(-(s² + cκ²)/σ²)`` arc-length/curvature field with its hard 45° cut-off; the angular
  selectivity comes from ``n`` instead of the curvature constant ``c``.
* In the stick pass the voters are pure sticks; the ball component of their first-pass
  tensors is not re-cast (Medioni casts both).
* Cheng et al. do not publish their field parameters (the full text was not available to
  us); σ is the caller's choice, typically about the largest gap to bridge.
* Large images are processed in overlap-save blocks, so memory is a few complex arrays of
  the block size, not of the image size.

Limitations: σ should be at least about the road width; on a band as wide as 2σ
the saliency has two ridges near the band edges instead of one on its axis. With the default
``boundary="reflect"`` a road crossing the image border obliquely meets its mirror image
there, which makes a small junction-like artifact within about σ of the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np
import scipy.fft as sfft

from geoseg.errors import ConfigError, InputMismatchError

__all__ = ["TensorVotingResult", "tensor_voting", "tensor_voting_direct"]


@dataclass(frozen=True)
class TensorVotingResult:
    """Per-pixel result of tensor voting.

    Attributes
    ----------
    saliency : numpy.ndarray
        Stickness ``λ1 - λ2`` of the accumulated tensor (float32, normalised, see module
        docstring).
    ballness : numpy.ndarray
        ``λ2`` of the accumulated tensor (float32, same normalisation, clipped at 0).
    orientation : numpy.ndarray
        Angle of the first eigenvector (the road direction), radians in ``(-π/2, π/2]``
        (float32).
    """

    saliency: np.ndarray
    ballness: np.ndarray
    orientation: np.ndarray


def _check_inputs(
    image: np.ndarray,
    sigma_px: float,
    orientation: np.ndarray | None,
    n_angular: int,
    truncate: float,
    boundary: str,
) -> tuple[np.ndarray, np.ndarray | None, tuple[slice, slice]]:
    """Validate the inputs and pad them for ``boundary``; return them and the crop back."""
    img = np.asarray(image)
    if img.ndim != 2 or img.size == 0:
        raise InputMismatchError(f"tensor voting needs a non-empty 2-D array, got shape {img.shape}")
    img = img.astype(np.float64)
    if not np.all(np.isfinite(img)) or np.any(img < 0):
        raise InputMismatchError("tensor voting needs finite, non-negative voter weights")
    if not sigma_px > 0:
        raise ConfigError(f"sigma_px must be > 0, got {sigma_px}")
    if not truncate > 0:
        raise ConfigError(f"truncate must be > 0, got {truncate}")
    if int(n_angular) != n_angular or n_angular < 1:
        raise ConfigError(f"n_angular must be an integer >= 1, got {n_angular}")
    if boundary not in ("reflect", "zero"):
        raise ConfigError(f"boundary must be 'reflect' or 'zero', got {boundary!r}")
    ori = None
    if orientation is not None:
        ori = np.asarray(orientation, dtype=np.float64)
        if ori.shape != img.shape:
            raise InputMismatchError(f"orientation shape {ori.shape} differs from image shape {img.shape}")
    pad = _radius(float(sigma_px), float(truncate)) if boundary == "reflect" else 0
    crop = (slice(pad, pad + img.shape[0]), slice(pad, pad + img.shape[1]))
    if pad == 0:
        return img, ori, crop
    img = np.pad(img, pad, mode="reflect")
    if ori is not None:
        # A mirror image of a line at angle β runs at -β: cos 2β is even, sin 2β odd.
        flip = np.logical_xor.outer(_mirrored(ori.shape[0], pad), _mirrored(ori.shape[1], pad))
        sin2 = np.pad(np.sin(2 * ori), pad, mode="reflect") * np.where(flip, -1.0, 1.0)
        ori = 0.5 * np.arctan2(sin2, np.pad(np.cos(2 * ori), pad, mode="reflect"))
    return img, ori, crop


def _mirrored(n: int, pad: int) -> np.ndarray:
    """Which positions of ``np.pad(range(n), pad, mode="reflect")`` are mirror images."""
    idx = np.pad(np.arange(n, dtype=np.float64), pad, mode="reflect")
    return np.gradient(idx) < 0 if n > 1 else np.zeros(idx.shape, dtype=bool)


def _radius(sigma_px: float, truncate: float) -> int:
    return int(np.floor(truncate * sigma_px))


def _line_norm(sigma_px: float, truncate: float) -> float:
    k = np.arange(1, _radius(sigma_px, truncate) + 1)
    return float(1.0 + 2.0 * np.exp(-(k**2) / (2.0 * sigma_px**2)).sum())


def _ball_norm(sigma_px: float, truncate: float, n_angular: int) -> float:
    """Ball-pass stickness ``|c_1 w_2 ⊛ s|`` of an infinite axis-aligned unit line."""
    return _harmonic_coefficients(n_angular)[1] * (_line_norm(sigma_px, truncate) - 1.0)


def _harmonic_coefficients(n_angular: int) -> dict[int, float]:
    """``c_m`` of ``cos^{2n}ψ = Σ_m c_m exp(2imψ)`` for ``m = -n..n``."""
    return {m: comb(2 * n_angular, n_angular - m) / 4.0**n_angular for m in range(-n_angular, n_angular + 1)}


def _offsets(radius: int, sigma_px: float, truncate: float) -> tuple[np.ndarray, np.ndarray]:
    """Radial weight ``g(r)`` (0 at the centre and beyond the cut-off) and angle ``φ``."""
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    r2 = dx**2 + dy**2
    g = np.exp(-r2 / (2.0 * sigma_px**2))
    g[(r2 == 0) | (r2 > (truncate * sigma_px) ** 2)] = 0.0
    return g, np.arctan2(dy, dx)


@lru_cache(maxsize=4)
def _kernel_spectra(sigma_px: float, truncate: float, shape: tuple[int, int], orders: tuple[int, ...]) -> dict[int, np.ndarray]:
    """FFTs (complex64, read-only) of the unweighted voting kernels ``w_k`` of one block shape, for the even ``orders``.

    Shared by all blocks and calls of that shape. A kernel fills only ``2·radius + 1`` rows
    and columns (wrapped around the origin), so the 2-D FFT is pruned: rows first (only those
    rows), then columns. Only non-negative orders are transformed; a negative order is the
    conjugate of the positive one (``w_-k = conj(w_k)``), whose spectrum is
    :func:`_conj_flip`. The harmonic weights are applied when the passes accumulate, so the
    stick pass's shape costs 2n + 1 arrays, not 3n + 3, and the ball pass's one.
    """
    radius = _radius(sigma_px, truncate)
    g, phi = _offsets(radius, sigma_px, truncate)
    rows = np.arange(-radius, radius + 1) % shape[0]
    cols = np.arange(-radius, radius + 1) % shape[1]
    transformed = sorted({abs(k) for k in orders})
    along_rows = np.zeros((len(transformed), len(rows), shape[1]), dtype=np.complex64)
    for i, order in enumerate(transformed):
        along_rows[i][:, cols] = g * np.exp(1j * order * phi)
    spectra = np.zeros((len(transformed), *shape), dtype=np.complex64)
    spectra[:, rows, :] = sfft.fft(along_rows, axis=2, overwrite_x=True)
    spectra = sfft.fft(spectra, axis=1, overwrite_x=True)
    positive = dict(zip(transformed, spectra))
    by_order = {k: positive[k] if k >= 0 else _conj_flip(positive[-k]) for k in orders}
    for spectrum in by_order.values():
        spectrum.flags.writeable = False
    return by_order


def _axis_blocks(n: int, radius: int, block_px: int) -> tuple[int, list[tuple[int, int]]]:
    """FFT length along one axis and the ``[start, stop)`` output ranges of its blocks.

    One block when the axis fits in 1.5 block lengths, else the fewest equal blocks whose
    core (block minus the ``2·radius`` overlap) fits in ``block_px``.
    """
    length = sfft.next_fast_len(max(block_px, 6 * radius))
    if n + 2 * radius <= 1.5 * length:
        return sfft.next_fast_len(n + 2 * radius), [(0, n)]
    core = -(-n // -(-n // (length - 2 * radius)))
    return sfft.next_fast_len(core + 2 * radius), [(a, min(a + core, n)) for a in range(0, n, core)]


_Region = tuple[tuple[int, int], tuple[int, int]]
"""Row and column ranges ``((row0, row1), (col0, col1))``."""


def _blocks(shape: tuple[int, int], radius: int, block_px: int, region: _Region | None = None):
    """Yield ``(block shape, image input slices, block input slices, output slices, core slices)``.

    The blocks' cores cover ``region`` (``((row0, row1), (col0, col1))``, default the whole
    image); each block reads ``radius`` pixels around its core, zeros beyond the image.
    """
    (top, bottom), (left, right) = region or ((0, shape[0]), (0, shape[1]))
    lh, rows = _axis_blocks(bottom - top, radius, block_px)
    lw, cols = _axis_blocks(right - left, radius, block_px)
    for r0, r1 in ((top + a, top + b) for a, b in rows):
        i0, i1 = max(r0 - radius, 0), min(r1 + radius, shape[0])
        for c0, c1 in ((left + a, left + b) for a, b in cols):
            j0, j1 = max(c0 - radius, 0), min(c1 + radius, shape[1])
            src = (slice(i0, i1), slice(j0, j1))
            dst = (slice(i0 - r0 + radius, i1 - r0 + radius), slice(j0 - c0 + radius, j1 - c0 + radius))
            out = (slice(r0, r1), slice(c0, c1))
            core = (slice(radius, radius + r1 - r0), slice(radius, radius + c1 - c0))
            yield (lh, lw), src, dst, out, core


def _voted_regions(shape: tuple[int, ...], crop: tuple[slice, slice], radius: int, context_px: tuple[int, int, int, int]) -> tuple[_Region, _Region]:
    """Where the ball and the stick pass vote, in padded coordinates.

    The stick pass votes on the image less ``radius`` on each side with that much context;
    the ball pass where the stick pass reads its voters: the whole padded image, but only up
    to the image's edge on those sides.
    """
    ball, stick = [], []
    for axis, (before, after) in enumerate((context_px[:2], context_px[2:])):
        start, stop = crop[axis].start, crop[axis].stop
        inner = (start + radius if before >= radius else start, stop - radius if after >= radius else stop)
        if inner[0] >= inner[1]:  # no room inside its context: voted on as a whole
            ball.append((0, shape[axis]))
            stick.append((start, stop))
            continue
        ball.append((start if before >= radius else 0, stop if after >= radius else shape[axis]))
        stick.append(inner)
    return (ball[0], ball[1]), (stick[0], stick[1])


def _conj_flip(spec: np.ndarray) -> np.ndarray:
    """Spectrum of ``conj(a)`` from the spectrum of ``a``: ``conj(A[-k mod L])``."""
    return np.conj(np.roll(spec[::-1, ::-1], 1, axis=(0, 1)))


def tensor_voting(
    image: np.ndarray,
    sigma_px: float,
    *,
    orientation: np.ndarray | None = None,
    n_angular: int = 4,
    truncate: float = 3.0,
    boundary: str = "reflect",
    block_px: int = 1024,
    workers: int | None = None,
    context_px: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> TensorVotingResult:
    """Steerable (FFT) tensor voting of a road mask or road-probability map.

    Parameters
    ----------
    image : numpy.ndarray
        2-D voter weights: a boolean road mask or a road probability in ``[0, 1]``
        (any finite non-negative values are accepted).
    sigma_px : float
        Scale σ of the voting field in pixels (Gaussian ``exp(-r²/2σ²)`` radial decay);
        about the largest gap to bridge. The cost does not depend on it (apart from the
        block overlap of ``2·truncate·σ`` pixels).
    orientation : numpy.ndarray, optional
        Voter orientations (road direction, radians, same shape as ``image``); the voters
        then have weight ``image``. If omitted, orientations and weights come from a
        ball-voting pass (module docstring).
    n_angular : int, default 4
        Angular exponent ``n`` of the ``cos^{2n}`` field (half weight at ±23.5° for
        ``n = 4``); the stick pass needs ``n + 2`` forward and 2 inverse FFTs per block.
        Votes at 45° off the voter's axis are perpendicular to it, so a small ``n`` puts
        perpendicular saliency ridges on the flanks of roads (``n = 2``: about 23 % of the
        centre saliency beside an 11-px band at σ = 10; ``n = 4``: 6 %, below the default
        NMS thresholds).
    truncate : float, default 3.0
        The field is zero beyond ``truncate·σ`` pixels (the blocks overlap by that much).
    boundary : {"reflect", "zero"}, default "reflect"
        Voters beyond the image border: ``"reflect"`` mirrors the image (and the given
        orientations) by ``truncate·σ`` pixels, so a road leaving the image does not look
        like a dead end; ``"zero"`` assumes no voters outside.
    block_px : int, default 1024
        Images larger than about 1.5 times this along an axis (after the mirror padding)
        are processed in overlap-save blocks of at most about this FFT length, which bounds
        memory to roughly a dozen complex64 arrays of ``(1.5·block_px)²``.
    workers : int, optional
        Threads for :mod:`scipy.fft`; ``None`` uses scipy's current default (1, or the
        value set by :func:`scipy.fft.set_workers`), ``-1`` all cores.
    context_px : tuple of int, default (0, 0, 0, 0)
        Pixels of the image that are only context (a tile's halo) on its top, bottom, left
        and right sides. A side with at least the field's radius (``truncate·σ``) of them is
        neither padded nor voted on: the result within that radius of it holds the voters'
        own votes only (cheaper FFTs for tiles, whose halo is cut away). Elsewhere the result
        is the same.

    Returns
    -------
    TensorVotingResult
        Saliency ``λ1 - λ2``, ballness ``λ2`` and orientation of the accumulated tensors,
        float32 arrays of the image's shape.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If the image is not a non-empty 2-D array of finite non-negative values, or
        ``orientation`` has another shape.
    geoseg.errors.ConfigError
        If ``sigma_px`` or ``truncate`` is not positive, ``n_angular`` is not an integer
        >= 1, or ``boundary`` is neither ``"reflect"`` nor ``"zero"``.

    Notes
    -----
    The voting field and the pipeline are defined in the module docstring; the result
    equals :func:`tensor_voting_direct` up to float32 rounding.

    Examples
    --------
    A one-pixel line along row 4: the saliency peaks on it (normalised to 1 on a straight
    line) and the orientation is along it (0 rad):

    >>> img = np.zeros((9, 15)); img[4, :] = 1
    >>> r = tensor_voting(img, 2.0)
    >>> int(r.saliency[:, 7].argmax()), round(float(r.saliency[4, 7]), 2)
    (4, 1.0)
    >>> abs(round(float(r.orientation[4, 7]), 3))
    0.0
    """
    img, ori, crop = _check_inputs(image, sigma_px, orientation, n_angular, truncate, boundary)
    sigma_px, truncate, n = float(sigma_px), float(truncate), int(n_angular)
    s = img.astype(np.float32)
    radius = _radius(sigma_px, truncate)
    coef = _harmonic_coefficients(n)
    ball_region, stick_region = _voted_regions(s.shape, crop, radius, context_px)

    if ori is None:
        # the ball pass's U2 gives each voter its doubled-angle direction e^{2iβ} (|U2| = stickness)
        ball = list(_blocks(s.shape, radius, int(block_px), ball_region))
        kernel = _kernel_spectra(sigma_px, truncate, ball[0][0], (2,))[2]
        direction = np.ones(s.shape, dtype=np.complex64)
        stick = np.zeros(s.shape, dtype=np.float32)
        for shape, src, dst, out, core in ball:
            block = np.zeros(shape, dtype=np.complex64)
            block[dst] = s[src]
            spec = sfft.fft2(block, overwrite_x=True, workers=workers)
            spec *= kernel
            u2 = sfft.ifft2(spec, overwrite_x=True, workers=workers)[core]
            magnitude = np.abs(u2)
            stick[out] = magnitude
            direction[out] = np.divide(u2, magnitude, out=np.ones_like(u2), where=magnitude > 0)
        s *= stick * np.float32(coef[1] / _ball_norm(sigma_px, truncate, n))
    else:
        direction = np.exp(2j * ori).astype(np.complex64)

    # Stick pass: U0 = Σ_m c_m w_2m ⊛ a_m, U2 = Σ_m c_m w_(2m+4) ⊛ a_(m+1), a_j = s e^{-2ijβ}.
    u0 = np.zeros(s.shape, dtype=np.float32)
    u2 = np.zeros(s.shape, dtype=np.complex64)
    u0_terms = [(m, 2 * m, coef[m] if m == 0 else 2.0 * coef[m]) for m in range(n + 1)]  # (a_j, kernel order, weight)
    u2_terms = [(m + 1, 2 * m + 4, coef[m]) for m in range(-n, n + 1)]
    blocks = list(_blocks(s.shape, radius, int(block_px), stick_region))
    kernels = _kernel_spectra(sigma_px, truncate, blocks[0][0], tuple(sorted({order for _, order, _ in u0_terms + u2_terms})))
    for shape, src, dst, out, core in blocks:
        phase = np.zeros(shape, dtype=np.complex64)
        phase[dst] = np.conj(direction[src])
        a = np.empty((n + 2, *shape), dtype=np.complex64)
        a[0] = 0.0
        a[0][dst] = s[src]
        for j in range(1, n + 2):
            np.multiply(a[j - 1], phase, out=a[j])
        spec = sfft.fft2(a, overwrite_x=True, workers=workers)
        del a, phase
        acc = np.zeros((2, *shape), dtype=np.complex64)
        term = np.empty(shape, dtype=np.complex64)
        for target, terms in ((acc[0], u0_terms), (acc[1], u2_terms)):
            for j, order, weight in terms:
                np.multiply(kernels[order], spec[j] if j >= 0 else _conj_flip(spec[-j]), out=term)
                term *= np.float32(weight)
                target += term
        del spec, term
        res = sfft.ifft2(acc, overwrite_x=True, workers=workers)
        u0[out] = res[0][core].real
        u2[out] = res[1][core]

    u0 += s
    u2 += s * direction
    return _result(u0[crop], u2[crop], _line_norm(sigma_px, truncate))


def _result(u0: np.ndarray, u2: np.ndarray, norm: float) -> TensorVotingResult:
    """Eigen-decomposition of the accumulated tensors, normalised."""
    sal = np.abs(u2)
    return TensorVotingResult(
        saliency=(sal / norm).astype(np.float32),
        ballness=np.maximum(0.5 * (u0 - sal) / norm, 0.0).astype(np.float32),
        orientation=(0.5 * np.angle(u2)).astype(np.float32),
    )


def tensor_voting_direct(
    image: np.ndarray,
    sigma_px: float,
    *,
    orientation: np.ndarray | None = None,
    n_angular: int = 4,
    truncate: float = 3.0,
    boundary: str = "reflect",
) -> TensorVotingResult:
    """Reference tensor voting by explicit vote accumulation, voter by voter (slow).

    Evaluates the field of the module docstring in closed form (``cos^{2n}(φ-β)``, stick
    along ``2φ - β``) for each voter with non-zero weight, in float64. The ball field is the
    average of the stick field over equally spaced ``β`` (exact for this trigonometric
    polynomial), not its harmonic closed form. Meant for tests and benchmarks.

    Parameters
    ----------
    image : numpy.ndarray
        2-D non-negative voter weights.
    sigma_px : float
        Scale σ of the voting field in pixels.
    orientation : numpy.ndarray, optional
        Voter orientations in radians; from ball voting when omitted.
    n_angular : int, default 4
        Angular exponent ``n`` of the ``cos^{2n}`` field.
    truncate : float, default 3.0
        The field is zero beyond ``truncate·σ`` pixels.
    boundary : {"reflect", "zero"}, default "reflect"
        Voters beyond the image border, as in :func:`tensor_voting`.

    Returns
    -------
    TensorVotingResult
        As :func:`tensor_voting`.

    Raises
    ------
    geoseg.errors.InputMismatchError, geoseg.errors.ConfigError
        As :func:`tensor_voting`.

    Examples
    --------
    >>> img = np.zeros((9, 15)); img[4, :] = 1
    >>> r = tensor_voting_direct(img, 2.0)
    >>> int(r.saliency[:, 7].argmax()), round(float(r.saliency[4, 7]), 2)
    (4, 1.0)
    >>> abs(round(float(r.orientation[4, 7]), 3))
    0.0
    """
    s, ori, crop_out = _check_inputs(image, sigma_px, orientation, n_angular, truncate, boundary)
    n = int(n_angular)
    radius = _radius(sigma_px, truncate)
    g, phi = _offsets(radius, sigma_px, truncate)
    size = 2 * radius + 1
    padded = (s.shape[0] + 2 * radius, s.shape[1] + 2 * radius)
    crop = (slice(radius, radius + s.shape[0]), slice(radius, radius + s.shape[1]))
    voters = np.argwhere(s > 0)

    if ori is None:
        betas = np.pi * np.arange(4 * n + 8) / (4 * n + 8)
        psi = phi[..., None] - betas
        ball = g * np.mean(np.cos(psi) ** (2 * n) * np.exp(1j * (4 * phi[..., None] - 2 * betas)), axis=-1)
        acc2 = np.zeros(padded, dtype=np.complex128)
        for i, j in voters:
            acc2[i : i + size, j : j + size] += s[i, j] * ball
        beta = 0.5 * np.angle(acc2[crop])
        s = s * np.abs(acc2[crop]) / _ball_norm(sigma_px, truncate, n)
        voters = np.argwhere(s > 0)
    else:
        beta = ori

    acc0 = np.zeros(padded, dtype=np.float64)
    acc2 = np.zeros(padded, dtype=np.complex128)
    for i, j in voters:
        b = beta[i, j]
        mag = s[i, j] * g * np.cos(phi - b) ** (2 * n)
        acc0[i : i + size, j : j + size] += mag
        acc2[i : i + size, j : j + size] += mag * np.exp(1j * (4 * phi - 2 * b))
    u0 = acc0[crop] + s
    u2 = acc2[crop] + s * np.exp(2j * beta)
    return _result(u0[crop_out], u2[crop_out], _line_norm(sigma_px, truncate))
