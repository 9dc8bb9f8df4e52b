"""Multiply-accumulates and BitOPs of the convolutions of a network, exact and expected.

The MACs of a convolution are counted on one forward pass of a ``tile_px × tile_px`` input
(batch 1): ``H_out · W_out · C_out · (C_in / groups) · k_h · k_w``. A layer with ``b_w``-bit
weights and ``b_a``-bit input activations costs ``MACs · b_w · b_a`` BitOPs (float layers
count 32 × 32). The expected BitOPs of a BP-NAS search (arXiv 2007.10026) with independent
per-layer bit-width distributions ``π^w_l``, ``π^a_l`` over candidates ``b`` is
``Σ_l MAC_l (Σ_i π^w_li b_i)(Σ_j π^a_lj b_j)``, a differentiable function of the logits.
Only convolutions are counted (they hold all the network's MACs; interpolation, pooling and
element-wise operations are ignored).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_TILE_PX", "FLOAT_BITS", "conv_macs", "expected_bitops", "total_bitops"]

#: BitOPs and MACs are reported per input tile of this side (pixels) unless told otherwise.
DEFAULT_TILE_PX = 512
#: Bit width counted for layers left in float.
FLOAT_BITS = 32


def conv_macs(module: nn.Module, in_channels: int, tile_px: int = DEFAULT_TILE_PX) -> dict[str, int]:
    """MACs of every ``nn.Conv2d`` (subclasses included) for one ``tile_px``² input, in execution order.

    Parameters
    ----------
    module : nn.Module
        The network; it is run once in eval mode without gradients (its state is unchanged).
    in_channels : int
        Input bands.
    tile_px : int
        Input side in pixels (a multiple of the network's stride).

    Returns
    -------
    dict
        conv name → MACs, ordered by first execution.
    """
    macs: dict[str, int] = {}
    names = {m: n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}
    hooks = []

    def hook(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        assert isinstance(mod, nn.Conv2d)
        kh, kw = mod.kernel_size
        n = int(output.shape[-2] * output.shape[-1] * mod.out_channels * (mod.in_channels // mod.groups) * kh * kw)
        macs[names[mod]] = macs.get(names[mod], 0) + n

    for m in names:
        hooks.append(m.register_forward_hook(hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, in_channels, tile_px, tile_px))
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    return macs


def total_bitops(macs: Mapping[str, int], bits: Mapping[str, tuple[int, int]]) -> int:
    """Exact BitOPs ``Σ MACs · b_w · b_a``; layers absent from ``bits`` count as float (32 × 32)."""
    return int(sum(m * bits.get(n, (FLOAT_BITS, FLOAT_BITS))[0] * bits.get(n, (FLOAT_BITS, FLOAT_BITS))[1] for n, m in macs.items()))


def expected_bitops(macs: Tensor, probs_w: Tensor, probs_a: Tensor, candidates: Tensor, fixed: float = 0.0) -> Tensor:
    """Expected BitOPs of searched layers (differentiable in the probabilities).

    Parameters
    ----------
    macs : Tensor
        ``(L,)`` MACs of the searched layers.
    probs_w, probs_a : Tensor
        ``(L, K)`` bit-width probabilities of weights and activations (rows sum to 1).
    candidates : Tensor
        ``(K,)`` candidate bit widths.
    fixed : float
        BitOPs of the layers whose bits are not searched.

    Returns
    -------
    Tensor
        Scalar ``fixed + Σ_l MAC_l E[b_w,l] E[b_a,l]`` (float64).
    """
    c = candidates.to(torch.float64)
    return fixed + (macs.to(torch.float64) * (probs_w.to(torch.float64) @ c) * (probs_a.to(torch.float64) @ c)).sum()
