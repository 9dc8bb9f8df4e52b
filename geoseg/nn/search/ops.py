"""Candidate operations of the searched cells (DARTS-style, ReLU → conv → BN).

Following DARTS (Liu et al., arXiv 1806.09055) as GAS (arXiv 1909.06793) does, every edge of
a cell chooses among a few operations that keep the shape of their input: ``zero`` (no
connection), ``skip_connect`` (identity), 3×3 and 5×5 depthwise-separable convolutions, a
dilated (rate 2) separable 3×3 and a plain 3×3 convolution. Where geoseg differs: each
separable convolution is applied once (DARTS stacks two) to keep the networks light on CPU.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["OPS", "OP_NAMES", "Zero", "build_op", "conv_bn_relu"]


class Zero(nn.Module):
    """The ``zero`` operation: no connection (a derived network drops such edges)."""

    def forward(self, x: Tensor) -> Tensor:
        """Zeros shaped like ``x``."""
        return x.mul(0.0)


def _sep(c: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, kernel, padding=pad, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
    )


def _conv(c: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))


#: Operation name -> constructor taking the channel count.
OPS: dict[str, Callable[[int], nn.Module]] = {
    "zero": lambda c: Zero(),
    "skip_connect": lambda c: nn.Identity(),
    "sep_conv_3x3": lambda c: _sep(c, 3),
    "sep_conv_5x5": lambda c: _sep(c, 5),
    "dil_conv_3x3": lambda c: _sep(c, 3, dilation=2),
    "conv_3x3": _conv,
}

#: All operation names, in a fixed order.
OP_NAMES: tuple[str, ...] = tuple(OPS)


def build_op(name: str, channels: int) -> nn.Module:
    """Instantiate operation ``name`` for ``channels`` channels.

    Raises
    ------
    KeyError
        Unknown operation name.
    """
    return OPS[name](channels)


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv + BN + ReLU (the fixed parts: stem, cell inputs, decoder)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
