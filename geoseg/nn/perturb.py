"""Random perturbations of normalised image batches for consistency training, with undoable flips.

Used by the mean teacher of :mod:`geoseg.nn.uda`: student and teacher see the same crops under
independent perturbations, and their predictions are compared pixel by pixel, so every
geometric change must be undone on the prediction first. The perturbations are

- photometric: a per-image, per-band gain ``1 + U(-b, b)`` and offset ``U(-b, b)`` (``b`` =
  ``brightness``, in band standard deviations, since the images are z-scored);
- Gaussian noise of standard deviation ``noise_std``;
- independent horizontal and vertical flips per image (an involution: applying the same
  flips to the prediction undoes them, see :func:`apply_flips`).

All random draws come from a caller-seeded ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Perturbation", "apply_flips", "perturb"]


@dataclass(frozen=True)
class Perturbation:
    """Settings of :func:`perturb`.

    Attributes
    ----------
    noise_std : float
        Standard deviation of the additive Gaussian noise.
    brightness : float
        Range of the per-band gain and offset.
    flips : bool
        Random horizontal and vertical flips.
    """

    noise_std: float = 0.1
    brightness: float = 0.2
    flips: bool = True


def apply_flips(x: Tensor, flips: Tensor) -> Tensor:
    """Flip each image of ``x`` (N, C, H, W) as ``flips`` (N, 2) bool says: column 0 horizontal, 1 vertical.

    Flips are their own inverse, so the same call undoes them on a prediction.
    """
    if not bool(flips.any()):
        return x
    out = x.clone()
    for i in range(x.shape[0]):
        dims = [d for d, on in ((-1, flips[i, 0]), (-2, flips[i, 1])) if bool(on)]
        if dims:
            out[i] = x[i].flip(dims)
    return out


def perturb(x: Tensor, settings: Perturbation, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Perturb a normalised batch.

    Parameters
    ----------
    x : Tensor
        ``(N, C, H, W)`` float images.
    settings : Perturbation
        Strength of each perturbation.
    gen : torch.Generator
        Source of the random draws (CPU).

    Returns
    -------
    perturbed : Tensor
        The perturbed batch (same shape, on ``x``'s device).
    flips : Tensor
        ``(N, 2)`` bool flips that were applied; undo them on the prediction with :func:`apply_flips`.
    """
    n, c = x.shape[:2]
    b = settings.brightness
    gain = 1.0 + (torch.rand(n, c, 1, 1, generator=gen) * 2 - 1) * b
    offset = (torch.rand(n, c, 1, 1, generator=gen) * 2 - 1) * b
    noise = torch.randn(x.shape, generator=gen) * settings.noise_std
    out = x * gain.to(x.device) + offset.to(x.device) + noise.to(x.device)
    flips = torch.rand(n, 2, generator=gen) < 0.5 if settings.flips else torch.zeros(n, 2, dtype=torch.bool)
    return apply_flips(out, flips), flips
