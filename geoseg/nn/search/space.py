"""The search space: a stem, a chain of independent cells, a light decoder (GAS, arXiv 1909.06793).

Layout (for ``width`` w and cell strides such as ``(4, 8, 8, 16, 16)``):

- **stem**: two stride-2 3×3 conv+BN+ReLU layers (w/2 then w channels) down to stride 4;
- **cells**: cell *i* runs at stride ``s_i`` with ``w·s_i/4`` channels. Its input (the
  previous cell's output) goes through a fixed *preprocessing* layer (stride-2 3×3 conv when
  the stride doubles, a 1×1 conv when only the channels change, else nothing) and becomes
  node 0. Intermediate nodes ``1..n`` sum one operation per edge from every earlier node
  (DARTS edges ``(i, j), i < j``); the cell outputs node 0 plus all intermediate nodes.
  Every cell has its own weights and its own architecture parameters (no cell sharing, as
  in GAS);
- **decoder** (fixed): the last cell's output, 1×1-projected and upsampled, is concatenated
  with the last stride-4 feature (1×1-projected), fused by a 1×1 conv and classified by a
  1×1 conv; logits are upsampled to the input size.

During search every edge is a softmax-weighted mixture of all candidate operations
(:class:`SuperNet`); the derived network (:class:`GASNet`) keeps one operation per edge
(its *genotype*) and drops ``zero`` edges. Where geoseg differs from GAS: a much smaller
space (a handful of cells on a stride-4 stem, 2 intermediate nodes per cell, a fixed
decoder instead of GAS's searched multi-resolution aggregation), sized for CPU minutes.

Both networks take a normalised ``(N, bands, H, W)`` tensor with sides multiple of 16 and
return a dict of logits at input resolution: ``seg`` (and ``centerline`` with that head),
like the networks of :mod:`geoseg.nn.models`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoseg.errors import ConfigError
from geoseg.nn.search.ops import OP_NAMES, build_op, conv_bn_relu

__all__ = ["DEFAULT_STRIDES", "GASNet", "SuperNet", "cell_channels", "cell_edges", "check_layout", "genotype_text"]

#: Default cell strides of the search space.
DEFAULT_STRIDES: tuple[int, ...] = (4, 8, 8, 16, 16)


def cell_edges(nodes: int) -> list[tuple[int, int]]:
    """DARTS edges ``(i, j)`` of a cell with ``nodes`` intermediate nodes, in a fixed order."""
    return [(i, j) for j in range(1, nodes + 1) for i in range(j)]


def cell_channels(width: int, stride: int) -> int:
    """Channels of a cell at ``stride``: ``width·stride/4``."""
    return width * stride // 4


def check_layout(strides: Sequence[int], nodes: int, genotype: Sequence[Sequence[str]] | None = None) -> None:
    """Validate cell strides (4, 8 or 16, non-decreasing, doubling at most) and a genotype.

    Raises
    ------
    ConfigError
        A stride outside {4, 8, 16}, a stride that decreases or more than doubles, no cell
        at stride 16, or a genotype whose shape or operation names do not fit.
    """
    strides = list(strides)
    if not strides or any(s not in (4, 8, 16) for s in strides):
        raise ConfigError(f"cell strides must each be 4, 8 or 16, got {strides}")
    prev = 4
    for s in strides:
        if s < prev or s > 2 * prev:
            raise ConfigError(f"cell strides must not decrease and may at most double from one cell to the next, got {strides}")
        prev = s
    if strides[-1] != 16:
        raise ConfigError(f"the last cell must be at stride 16, got {strides}")
    if nodes < 1:
        raise ConfigError(f"cells need at least one intermediate node, got {nodes}")
    if genotype is not None:
        n_edges = len(cell_edges(nodes))
        if len(genotype) != len(strides) or any(len(cell) != n_edges for cell in genotype):
            raise ConfigError(f"genotype must list {n_edges} operation(s) for each of the {len(strides)} cells")
        unknown = sorted({op for cell in genotype for op in cell} - set(OP_NAMES))
        if unknown:
            raise ConfigError(f"genotype names unknown operation(s) {unknown} (known: {', '.join(OP_NAMES)})")


def genotype_text(genotype: Sequence[Sequence[str]], strides: Sequence[int], nodes: int) -> list[str]:
    """One readable line per cell, e.g. ``cell 0 (stride 4): 0->1 sep_conv_3x3, 0->2 zero, 1->2 skip_connect``."""
    edges = cell_edges(nodes)
    return [f"cell {k} (stride {s}): " + ", ".join(f"{i}->{j} {op}" for (i, j), op in zip(edges, cell)) for k, (s, cell) in enumerate(zip(strides, genotype))]


def _preprocess(c_prev: int, c: int, reduce: bool) -> nn.Module:
    if reduce:
        return conv_bn_relu(c_prev, c, 3, stride=2)
    if c_prev != c:
        return conv_bn_relu(c_prev, c, 1)
    return nn.Identity()


class _Skeleton(nn.Module):
    """The fixed parts shared by the super-network and the derived network."""

    def __init__(self, in_channels: int, num_classes: int, width: int, strides: Sequence[int], nodes: int, centerline_head: bool) -> None:
        super().__init__()
        check_layout(strides, nodes)
        self.width = int(width)
        self.strides = [int(s) for s in strides]
        self.nodes = int(nodes)
        self.edges = cell_edges(nodes)
        self.channels = [cell_channels(width, s) for s in self.strides]
        half = max(width // 2, 4)
        self.stem = nn.Sequential(conv_bn_relu(in_channels, half, 3, stride=2), conv_bn_relu(half, width, 3, stride=2))
        self.pre = nn.ModuleList()
        c_prev, s_prev = width, 4
        for s, c in zip(self.strides, self.channels):
            self.pre.append(_preprocess(c_prev, c, s > s_prev))
            c_prev, s_prev = c, s
        # index of the last feature at stride 4 (-1: the stem's output)
        self.low_index = max((k for k, s in enumerate(self.strides) if s == 4), default=-1)
        c_low = self.channels[self.low_index] if self.low_index >= 0 else width
        self.project_high = conv_bn_relu(self.channels[-1], 2 * width, 1)
        self.project_low = conv_bn_relu(c_low, width, 1)
        self.fuse = conv_bn_relu(3 * width, width, 1)
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.centerline = nn.Conv2d(width, 1, 1) if centerline_head else None

    def _cell(self, k: int, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Logits at the input resolution: ``seg`` and optionally ``centerline``."""
        size = x.shape[-2:]
        y = self.stem(x)
        low = y
        for k in range(len(self.strides)):
            y = self._cell(k, self.pre[k](y))
            if k == self.low_index:
                low = y
        high = F.interpolate(self.project_high(y), size=low.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.fuse(torch.cat([high, self.project_low(low)], dim=1))
        out = {"seg": F.interpolate(self.classifier(fused), size=size, mode="bilinear", align_corners=False)}
        if self.centerline is not None:
            out["centerline"] = F.interpolate(self.centerline(fused), size=size, mode="bilinear", align_corners=False)
        return out


class MixedOp(nn.Module):
    """A softmax-weighted sum of all candidate operations on one edge (continuous relaxation)."""

    def __init__(self, channels: int, ops: Sequence[str]) -> None:
        super().__init__()
        self.names = list(ops)
        self.ops = nn.ModuleList([build_op(name, channels) for name in self.names])

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """``Σ_k weights[k]·op_k(x)``; the ``zero`` operation contributes nothing and is not run."""
        return sum(w * op(x) for w, op, name in zip(weights, self.ops, self.names) if name != "zero")  # type: ignore[return-value]


class SuperNet(_Skeleton):
    """The network searched over: every edge of every cell is a :class:`MixedOp`.

    The architecture parameters are not part of this module: :meth:`forward_arch` takes the
    per-cell edge weights (softmax of the possibly GCN-transformed parameters).
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 2, width: int = 16, strides: Sequence[int] = DEFAULT_STRIDES,
        nodes: int = 2, ops: Sequence[str] = OP_NAMES,
    ) -> None:  # fmt: skip
        super().__init__(in_channels, num_classes, width, strides, nodes, False)
        self.op_names = list(ops)
        self.cells = nn.ModuleList([nn.ModuleList([MixedOp(c, self.op_names) for _ in self.edges]) for c in self.channels])
        self._weights: Tensor | None = None

    def _cell(self, k: int, x: Tensor) -> Tensor:
        assert self._weights is not None
        cell = self.cells[k]
        assert isinstance(cell, nn.ModuleList)
        states = [x]
        for j in range(1, self.nodes + 1):
            states.append(sum(cell[e](states[i], self._weights[k, e]) for e, (i, jj) in enumerate(self.edges) if jj == j))
        return sum(states)  # type: ignore[return-value]

    def forward_arch(self, x: Tensor, weights: Tensor) -> dict[str, Tensor]:
        """Forward pass with edge weights ``(cells, edges, ops)`` (rows summing to 1)."""
        self._weights = weights
        try:
            return super().forward(x)
        finally:
            self._weights = None


class GASNet(_Skeleton):
    """A derived network: one operation per edge (``genotype[cell][edge]``), zero edges dropped.

    Parameters
    ----------
    in_channels, num_classes, width : int
        Input bands, classes, channels at stride 4.
    strides : sequence of int
        Stride of each cell.
    nodes : int
        Intermediate nodes per cell; edges are ordered as :func:`cell_edges`.
    genotype : list of list of str
        Operation name of each edge of each cell.
    centerline_head : bool
        Add the 1-channel centerline output.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 2, width: int = 16, strides: Sequence[int] = DEFAULT_STRIDES,
        nodes: int = 2, genotype: Sequence[Sequence[str]] | None = None, centerline_head: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(in_channels, num_classes, width, strides, nodes, centerline_head)
        if genotype is None:
            genotype = [["skip_connect"] * len(self.edges) for _ in self.strides]
        check_layout(strides, nodes, genotype)
        self.genotype = [list(cell) for cell in genotype]
        self.cells = nn.ModuleDict()
        for k, (c, cell) in enumerate(zip(self.channels, self.genotype)):
            for e, op in enumerate(cell):
                if op != "zero":
                    self.cells[f"{k}_{e}"] = build_op(op, c)

    def _cell(self, k: int, x: Tensor) -> Tensor:
        states: list[Tensor | None] = [x]
        for j in range(1, self.nodes + 1):
            parts = [
                self.cells[f"{k}_{e}"](states[i]) for e, (i, jj) in enumerate(self.edges) if jj == j and f"{k}_{e}" in self.cells and states[i] is not None
            ]
            states.append(sum(parts) if parts else None)  # type: ignore[arg-type]
        return sum(s for s in states if s is not None)  # type: ignore[return-value]
