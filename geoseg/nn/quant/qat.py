"""Convolutions with simulated quantization for training, and their BN-folded inference form.

:class:`QConv2d` replaces an ``nn.Conv2d`` during quantization-aware training: it fake-quantizes
its input activation and its weights (per output-filter group, :mod:`.quantizers`) and
convolves in float. In BP-NAS search mode it convolves the probability-weighted mixtures
``Σ_i π_i Q_{b_i}(W)`` and ``Σ_j π_j Q_{b_j}(x)`` instead (arXiv 2007.10026).

:class:`FoldedQConv2d` is the inference form (GDRQ, arXiv 1908.01477: group scales merged
into batch norm): the weights are the **integer** codes ``q``, the input is turned into its
integer activation codes, and one per-channel multiplier ``m_c = s_a · s_{g(c)} · γ_c/σ_c``
and bias ``b_c = β_c − γ_c μ_c/σ_c`` (plus the conv bias) replace the group scales, the
activation scale and the following BatchNorm. The bias is held on the accumulator's grid
(a whole number of ``|m_c|``), as an integer inference engine holds it (``int32``, added to the
integer sums): the ONNX export (:mod:`.onnx_qdq`) then computes what this layer computes. The
arithmetic is simulated in float32 (no integer kernels): the result equals the unfolded
fake-quantized network up to float round-off and the bias's rounding (half an accumulator step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from geoseg.errors import InputMismatchError
from geoseg.nn.quant.quantizers import (
    default_k,
    fake_quant_signed,
    fake_quant_unsigned,
    group_clips,
    group_ids,
    signed_levels,
)

__all__ = [
    "FoldedQConv2d",
    "LayerBits",
    "QConv2d",
    "conv_bn_pairs",
    "convert_to_qat",
    "accumulator_codes",
    "act_step",
    "bias_on_accumulator_grid",
    "build_folded",
    "fold_layer",
    "fold_network",
    "layer_codes",
    "get_module",
    "quantized_layers",
    "set_module",
]


@dataclass
class LayerBits:
    """Bit widths of one convolution: weights and input activations."""

    w_bits: int
    a_bits: int


def get_module(root: nn.Module, name: str) -> nn.Module:
    """The sub-module at dotted path ``name``."""
    return root.get_submodule(name)


def set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module at dotted path ``name`` by ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def conv_bn_pairs(root: nn.Module) -> dict[str, str]:
    """Convolutions directly followed by a BatchNorm2d of their width.

    Found in ``nn.Sequential`` containers (a convolution and the BN after it), and in modules
    that name their pairs in a ``CONV_BN_PAIRS`` class attribute (``(conv child, BN child)``
    tuples, for modules whose forward applies the BN to the convolution's output directly).

    Returns
    -------
    dict
        conv module name → BN module name.
    """
    pairs = {}
    for parent_name, parent in root.named_modules():
        prefix = f"{parent_name}." if parent_name else ""
        candidates: list[tuple[str, nn.Module | None, str, nn.Module | None]]
        if isinstance(parent, nn.Sequential):
            children = list(parent.named_children())
            candidates = [(n1, c1, n2, c2) for (n1, c1), (n2, c2) in zip(children, children[1:])]
        else:
            candidates = [(n1, getattr(parent, n1, None), n2, getattr(parent, n2, None)) for n1, n2 in getattr(parent, "CONV_BN_PAIRS", ())]
        for n1, c1, n2, c2 in candidates:
            if isinstance(c1, nn.Conv2d) and isinstance(c2, nn.BatchNorm2d) and c2.num_features == c1.out_channels:
                pairs[prefix + n1] = prefix + n2
    return pairs


class QConv2d(nn.Conv2d):
    """A Conv2d that fake-quantizes its input and weights (GDRQ Scale-Clip or min-max).

    Parameters
    ----------
    conv : nn.Conv2d
        The float convolution (its weights are copied).
    bits : LayerBits
        Weight and activation bit widths (``32`` = float, not quantized).
    groups_q : int
        Weight groups (output filters split by magnitude rank); min-max uses one.
    method : {"gdrq", "minmax"}
        Scale-Clip with groups, or plain per-layer min-max clipping.
    k_w, k_a : float, optional
        Scale-Clip factors (default: :func:`default_k` of the bit width).
    momentum : float
        EMA momentum of the activation statistic.
    """

    act_stat: Tensor
    act_min: Tensor
    observed: Tensor

    def __init__(self, conv: nn.Conv2d, bits: LayerBits, groups_q: int = 4, method: str = "gdrq",
                 k_w: float | None = None, k_a: float | None = None, momentum: float = 0.1) -> None:  # fmt: skip
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,  # type: ignore[arg-type]  # torch types these pairs tuple[int, ...]
            padding=conv.padding, dilation=conv.dilation,  # type: ignore[arg-type]  # torch types these pairs tuple[int, ...]
            groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
        )  # fmt: skip
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None and self.bias is not None:
                self.bias.copy_(conv.bias)
        self.bits = bits
        self.method = method
        self.groups_q = 1 if method == "minmax" else groups_q
        self.k_w, self.k_a = k_w, k_a
        self.momentum = momentum
        self.register_buffer("act_stat", torch.zeros(()))  # EMA of mean|x| (gdrq) or max|x| (minmax)
        self.register_buffer("act_min", torch.zeros(()))  # smallest input seen: < 0 means signed
        self.register_buffer("observed", torch.zeros((), dtype=torch.bool))
        self.quantize = True  # False: float forward (calibration)
        self.mix: tuple[Tensor, Tensor, tuple[int, ...]] | None = None  # BP-NAS: (π_w, π_a, candidates)

    # -- statistics -------------------------------------------------------------------------
    def _observe(self, x: Tensor) -> None:
        with torch.no_grad():
            stat = x.abs().amax() if self.method == "minmax" else x.abs().mean()
            if not bool(self.observed):
                self.act_stat.copy_(stat)
                self.act_min.copy_(x.amin())
                self.observed.fill_(True)
            else:
                self.act_stat.mul_(1 - self.momentum).add_(self.momentum * stat)
                self.act_min.copy_(torch.minimum(self.act_min, x.amin()))

    @property
    def act_signed(self) -> bool:
        """Whether the input takes negative values (symmetric instead of unsigned levels)."""
        return bool(self.act_min < 0)

    def act_clip(self, bits: int) -> Tensor:
        """Activation clip at ``bits``: ``k_a · EMA(mean|x|)`` or the EMA maximum (min-max)."""
        if self.method == "minmax":
            return self.act_stat
        return self.act_stat * (self.k_a if self.k_a is not None else default_k(bits, "act"))

    def weight_clips(self, bits: int) -> tuple[Tensor, Tensor]:
        """``(group ids (C_out,), per-group clips (G,))`` of the current weights at ``bits``."""
        ids = group_ids(self.weight, self.groups_q)
        k = self.k_w if self.k_w is not None else default_k(bits, "weight")
        return ids, group_clips(self.weight, ids, k, minmax=self.method == "minmax")

    # -- quantizers --------------------------------------------------------------------------
    def quant_weight(self, bits: int) -> Tensor:
        """Fake-quantized weights at ``bits`` (float weights at 32 bits)."""
        if bits >= 32:
            return self.weight
        ids, clips = self.weight_clips(bits)
        clip = clips[ids].reshape((-1,) + (1,) * (self.weight.dim() - 1))
        return fake_quant_signed(self.weight, clip, bits)

    def quant_act(self, x: Tensor, bits: int) -> Tensor:
        """Fake-quantized input activation at ``bits``."""
        if bits >= 32:
            return x
        clip = self.act_clip(bits)
        return fake_quant_signed(x, clip, bits) if self.act_signed else fake_quant_unsigned(x, clip, bits)

    def forward(self, x: Tensor) -> Tensor:
        """Convolve with fake-quantized weights and activations (statistics observed while training)."""
        if self.training or not bool(self.observed):
            self._observe(x)
        if not self.quantize:
            return self._conv_forward(x, self.weight, self.bias)
        if self.mix is not None:
            pw, pa, cands = self.mix
            w = sum(p * self.quant_weight(b) for p, b in zip(pw, cands))
            xq = sum(p * self.quant_act(x, b) for p, b in zip(pa, cands))
            return self._conv_forward(xq, w, self.bias)
        return self._conv_forward(self.quant_act(x, self.bits.a_bits), self.quant_weight(self.bits.w_bits), self.bias)


def quantized_layers(root: nn.Module) -> dict[str, QConv2d]:
    """The :class:`QConv2d` sub-modules by name."""
    return {n: m for n, m in root.named_modules() if isinstance(m, QConv2d)}


def convert_to_qat(root: nn.Module, bits: dict[str, LayerBits], **kwargs: object) -> nn.Module:
    """Replace (in place) each Conv2d named in ``bits`` by a :class:`QConv2d`; return ``root``."""
    for name, b in bits.items():
        conv = get_module(root, name)
        if not isinstance(conv, nn.Conv2d):
            raise KeyError(f"{name} is not a Conv2d")
        q = QConv2d(conv, b, **kwargs)  # type: ignore[arg-type]
        q.train(conv.training)
        set_module(root, name, q)
    return root


class FoldedQConv2d(nn.Conv2d):
    """Inference convolution on integer weight and activation codes with a folded per-channel affine.

    ``y_c = m_c · conv(x_int, W_int)_c + b_c`` where ``x_int`` are the activation codes
    (``round(clip(x)/s_a)``) and ``W_int`` the signed integer weight codes; ``m_c`` carries the
    activation step, the group weight step and the BN scale, ``b_c`` the BN shift and conv bias.
    The integer codes are held in ``weight`` (float tensor of integer values); with integer
    codes and an integer input, ``b_c`` is rounded to a whole number of ``|m_c|``
    (:func:`bias_on_accumulator_grid`).
    """

    mult: Tensor
    shift: Tensor

    def __init__(self, conv: nn.Conv2d, w_int: Tensor, mult: Tensor, bias: Tensor, a_bits: int, a_clip: float, a_signed: bool) -> None:
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,  # type: ignore[arg-type]  # torch types these pairs tuple[int, ...]
            padding=conv.padding, dilation=conv.dilation,  # type: ignore[arg-type]  # torch types these pairs tuple[int, ...]
            groups=conv.groups, bias=False, padding_mode=conv.padding_mode,
        )  # fmt: skip
        with torch.no_grad():
            self.weight.copy_(w_int)
        self.weight.requires_grad_(False)
        self.a_bits, self.a_clip, self.a_signed = a_bits, float(a_clip), a_signed
        self.register_buffer("mult", mult.detach().clone().float())
        self.register_buffer("shift", bias_on_accumulator_grid(bias.detach().float(), self.mult) if self.integer_codes else bias.detach().clone().float())

    @property
    def integer_codes(self) -> bool:
        """Whether the layer multiplies integer activation codes by integer weight codes (else a float input or float weights)."""
        return self.a_bits < 32 and bool(torch.all(self.weight == torch.round(self.weight)))

    def act_step(self) -> float:
        """Step of the input activation codes (1 when the input stays float)."""
        return act_step(self.a_bits, self.a_clip, self.a_signed)

    def forward(self, x: Tensor) -> Tensor:
        """Integer-grid activations, integer weights, then the folded per-channel multiplier and shift."""
        if self.a_bits < 32:
            clip = max(self.a_clip, 1e-8)
            lo = -clip if self.a_signed else 0.0
            x = torch.round(torch.clamp(x, lo, clip) / self.act_step())
        y = self._conv_forward(x, self.weight, None)
        return y * self.mult.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)


def build_folded(conv: nn.Conv2d, w_int: Tensor, w_step: Tensor, conv_bias: Tensor | None, bn: nn.BatchNorm2d | None,
                 a_bits: int, a_clip: float, a_signed: bool) -> FoldedQConv2d:  # fmt: skip
    """Fold the per-channel weight steps, the activation step, the conv bias and ``bn`` into one affine.

    Parameters
    ----------
    conv : nn.Conv2d
        Shape template (channels, kernel, stride, padding, ...).
    w_int : Tensor
        Integer weight codes (signed), float dtype.
    w_step : Tensor
        ``(C_out,)`` weight step of each filter (its group's step).
    conv_bias : Tensor, optional
        The convolution's bias.
    bn : nn.BatchNorm2d, optional
        The following batch norm (its running statistics are used).
    a_bits, a_clip, a_signed
        Input activation quantizer (``a_bits`` 32: float input).

    Raises
    ------
    InputMismatchError
        ``bn`` keeps no running statistics.
    """
    mult = w_step.detach().float() * act_step(a_bits, a_clip, a_signed)
    shift = conv_bias.detach().clone().float() if conv_bias is not None else torch.zeros(conv.out_channels)
    if bn is not None:
        if bn.running_mean is None or bn.running_var is None:
            raise InputMismatchError("cannot fold a BatchNorm2d without running statistics (track_running_stats=False)")
        inv = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        mult = mult * inv
        shift = (shift - bn.running_mean) * inv + bn.bias.detach()
    return FoldedQConv2d(conv, w_int, mult, shift, a_bits, a_clip, a_signed)


def act_step(a_bits: int, a_clip: float, a_signed: bool) -> float:
    """Step of ``a_bits``-bit activation codes clipped at ``a_clip`` (1 for a float input, 32 bits)."""
    if a_bits >= 32:
        return 1.0
    n = signed_levels(a_bits) if a_signed else (1 << a_bits) - 1
    return max(a_clip, 1e-8) / n


#: Largest bias, in accumulator steps, that an ``int32`` holds; a channel beyond it keeps a float bias.
INT32_MAX = 2**31 - 1


def bias_on_accumulator_grid(bias: Tensor, mult: Tensor) -> Tensor:
    """``bias`` rounded to whole multiples of ``|mult|`` per channel (where that multiple fits an ``int32``).

    Examples
    --------
    >>> bias_on_accumulator_grid(torch.tensor([0.3, -1.1]), torch.tensor([0.25, -0.5])).tolist()
    [0.25, -1.0]
    """
    codes, fits = accumulator_codes(bias, mult)
    return torch.where(fits, (codes * mult.abs().double()).float(), bias)


def accumulator_codes(bias: Tensor, mult: Tensor) -> tuple[Tensor, Tensor]:
    """``bias`` in whole accumulator steps ``|mult|`` per channel (float64), and where that number fits an ``int32``."""
    step = mult.abs().double()
    codes = torch.round(bias.double() / step)
    return codes, (step > 0) & (codes.abs() <= INT32_MAX)


def layer_codes(conv: QConv2d) -> tuple[Tensor, Tensor, Tensor]:
    """``(codes, group ids, group steps)`` of a trained :class:`QConv2d`'s weights.

    ``codes`` are unsigned (``q + n``, see :func:`geoseg.nn.quant.quantizers.weight_codes`).
    """
    from geoseg.nn.quant.quantizers import weight_codes

    bits = conv.bits.w_bits
    ids, clips = conv.weight_clips(bits)
    return weight_codes(conv.weight, ids, clips, bits), ids, clips / signed_levels(bits)


def fold_layer(conv: QConv2d, bn: nn.BatchNorm2d | None) -> FoldedQConv2d:
    """The :class:`FoldedQConv2d` of a trained :class:`QConv2d` and its following BN (eval statistics)."""
    b = conv.bits
    if b.w_bits >= 32:
        w_int, w_step = conv.weight.detach(), torch.ones(conv.out_channels)
    else:
        codes, ids, steps = layer_codes(conv)
        w_int, w_step = (codes - signed_levels(b.w_bits)).float(), steps[ids]
    a_clip = float(conv.act_clip(b.a_bits)) if b.a_bits < 32 else 0.0
    return build_folded(conv, w_int, w_step, conv.bias, bn, b.a_bits, a_clip, conv.act_signed)


def fold_network(root: nn.Module) -> nn.Module:
    """Replace (in place) every :class:`QConv2d` and its BN by a :class:`FoldedQConv2d` (and Identity)."""
    pairs = conv_bn_pairs(root)
    for name, conv in quantized_layers(root).items():
        bn_name = pairs.get(name)
        bn = get_module(root, bn_name) if bn_name else None
        set_module(root, name, fold_layer(conv, bn))  # type: ignore[arg-type]
        if bn_name:
            set_module(root, bn_name, nn.Identity())
    return root.eval()
