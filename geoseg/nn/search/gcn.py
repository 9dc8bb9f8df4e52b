"""Graph-guided communication between the cells' architecture parameters (GAS, arXiv 1909.06793).

GAS searches every cell independently and lets a graph convolution network (GCN) pass
information between the cells' architecture parameters: each cell is a node of a graph whose
feature is its flattened parameter matrix ``α_i`` (edges × operations); neighbouring cells are
connected. A two-layer GCN (Kipf & Welling, arXiv 1609.02907) with the normalised adjacency
``Â = D^-½ (A + I) D^-½`` gives ``Z = Â · ReLU(Â X W1) · W2`` and the parameters actually used
in the forward pass are ``α' = α + γ·Z``. The GCN weights are learnt with ``α`` by the
architecture optimizer. Where geoseg differs: the graph is the chain of consecutive cells
(GAS builds its graph from the cells of its multi-resolution network), and ``γ`` is a fixed
hyper-parameter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CellGCN", "chain_adjacency"]


def chain_adjacency(n: int) -> Tensor:
    """Normalised adjacency ``D^-½ (A + I) D^-½`` of a chain of ``n`` cells (consecutive cells linked)."""
    a = torch.eye(n)
    for i in range(n - 1):
        a[i, i + 1] = a[i + 1, i] = 1.0
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class CellGCN(nn.Module):
    """Two-layer GCN over the cells: ``α' = α + γ · Â ReLU(Â X W1) W2`` with ``X`` = flattened ``α``.

    Parameters
    ----------
    cells : int
        Number of cells (graph nodes).
    features : int
        Architecture parameters per cell (edges × operations).
    hidden : int
        Hidden units of the first layer.
    gamma : float
        Weight of the GCN's output added to the parameters.
    """

    def __init__(self, cells: int, features: int, hidden: int = 16, gamma: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("adjacency", chain_adjacency(cells))
        self.w1 = nn.Linear(features, hidden, bias=False)
        self.w2 = nn.Linear(hidden, features, bias=False)
        self.gamma = float(gamma)

    def forward(self, alpha: Tensor) -> Tensor:
        """Transformed parameters, same shape as ``alpha`` ``(cells, edges, ops)``."""
        x = alpha.reshape(alpha.shape[0], -1)
        h = torch.relu(self.adjacency @ self.w1(x))
        z = self.adjacency @ self.w2(h)
        return alpha + self.gamma * z.reshape(alpha.shape)
