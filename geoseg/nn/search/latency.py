"""Latency lookup table measured on this machine, and the differentiable expected latency.

GAS (arXiv 1909.06793) adds a latency-oriented constraint to the search loss. geoseg builds
a lookup table (LUT) by **timing** every candidate operation of every cell at the input shape
it sees for one inference tile (``tile_px``², batch 1) on the configured device and CPU
threads, plus the fixed parts (stem, cell preprocessing, decoder) timed together as a network
whose edges are all ``zero``. The expected latency of the super-network is

    E[lat] = fixed + Σ_cells Σ_edges Σ_ops softmax(α')[cell, edge, op] · LUT[cell, op]

which is differentiable in the architecture parameters. The search loss adds
``weight · max(0, E[lat]/target − 1)`` (a hinge relative to the target: no pressure below the
target). What differs from GAS: the exact form of its latency loss is not reproduced (the
hinge is geoseg's choice), and the node additions of a cell are not in the table (they are
in the real measurement of the derived network, :func:`measure_network`).

Timings are medians over ``repeats`` runs after ``warmup`` runs, under ``torch.no_grad`` in
eval mode, repeated in ``rounds`` interleaved rounds whose median is kept (robust to bursts of
load on a shared machine); on CUDA the device is synchronised around each run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from geoseg.nn.search.ops import build_op
from geoseg.nn.search.space import GASNet, SuperNet

__all__ = ["LatencyTable", "build_lut", "expected_latency", "latency_penalty", "measure_network", "time_module"]


def time_module(module: nn.Module, x: Tensor, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``module(x)`` in milliseconds (eval mode, no autograd).

    Parameters
    ----------
    module : torch.nn.Module
        What to time (moved to ``x``'s device by the caller).
    x : Tensor
        Its input.
    repeats, warmup : int
        Timed runs (the median is returned) and untimed runs before them.
    """
    cuda = x.device.type == "cuda"
    was_training = module.training
    module.eval()
    times = []
    try:
        with torch.no_grad():
            for k in range(warmup + repeats):
                if cuda:
                    torch.cuda.synchronize(x.device)
                t0 = time.perf_counter()
                module(x)
                if cuda:
                    torch.cuda.synchronize(x.device)
                if k >= warmup:
                    times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        module.train(was_training)
    return float(statistics.median(times))


@dataclass
class LatencyTable:
    """Measured latencies (ms) for one tile: ``ops[cell][op]`` per edge, and the ``fixed`` parts.

    Attributes
    ----------
    op_names : list of str
        Column order of :meth:`tensor`.
    ops : list of dict
        Per cell: operation name -> milliseconds at that cell's input shape.
    fixed_ms : float
        Stem, cell preprocessing and decoder together (a network with only ``zero`` edges).
    tile_px : int
        Side of the tile the shapes are derived from.
    device : str
        Where it was measured.
    threads : int
        torch CPU threads during measurement.
    """

    op_names: list[str]
    ops: list[dict[str, float]]
    fixed_ms: float
    tile_px: int
    device: str
    threads: int

    def tensor(self) -> Tensor:
        """``(cells, ops)`` milliseconds, columns in :attr:`op_names` order."""
        return torch.tensor([[cell[name] for name in self.op_names] for cell in self.ops], dtype=torch.float32)

    def predict(self, genotype: Sequence[Sequence[str]]) -> float:
        """LUT latency of a derived network (ms): fixed parts plus its operations."""
        return self.fixed_ms + sum(self.ops[k][op] for k, cell in enumerate(genotype) for op in cell)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for model metadata)."""
        return {"tile_px": self.tile_px, "device": self.device, "threads": self.threads, "fixed_ms": self.fixed_ms, "ops_ms": self.ops}

    @classmethod
    def from_dict(cls, data: dict[str, Any], op_names: Sequence[str]) -> LatencyTable:
        """The table :meth:`to_dict` wrote, with its operations in ``op_names`` order."""
        ops = [{str(k): float(v) for k, v in cell.items()} for cell in data["ops_ms"]]
        return cls(list(op_names), ops, float(data["fixed_ms"]), int(data["tile_px"]), str(data["device"]), int(data["threads"]))


def build_lut(
    net: SuperNet, tile_px: int = 512, *, device: str = "cpu", repeats: int = 7, warmup: int = 2, rounds: int = 3, in_channels: int = 3
) -> LatencyTable:
    """Time every candidate operation of every cell of ``net`` at its input shape for one tile.

    Parameters
    ----------
    net : SuperNet
        The search space (its layout is used; its weights are not timed).
    tile_px : int
        Side of the inference tile (a multiple of 16).
    device : str
        ``cpu`` or ``cuda``; on CPU the current ``torch.get_num_threads()`` is used.
    repeats, warmup : int
        See :func:`time_module`.
    rounds : int
        All operations are timed once per round; each entry is the median over the rounds,
        so a burst of load on a shared machine does not bias one operation only.
    in_channels : int
        Bands of the input (for the fixed parts).
    """
    dev = torch.device(device)
    cells = []
    for stride, channels in zip(net.strides, net.channels):
        side = tile_px // stride
        x = torch.randn(1, channels, side, side, device=dev)
        cells.append((x, {name: build_op(name, channels).to(dev) for name in net.op_names}))
    skeleton = GASNet(in_channels, 2, net.width, net.strides, net.nodes, [["zero"] * len(net.edges) for _ in net.strides]).to(dev)
    image = torch.randn(1, in_channels, tile_px, tile_px, device=dev)
    samples: list[dict[str, list[float]]] = [{name: [] for name in net.op_names} for _ in cells]
    fixed: list[float] = []
    for _ in range(max(rounds, 1)):
        for (x, modules), times in zip(cells, samples):
            for name, module in modules.items():
                times[name].append(time_module(module, x, repeats, warmup))
        fixed.append(time_module(skeleton, image, repeats, warmup))
    ops = [{name: float(statistics.median(v)) for name, v in times.items()} for times in samples]
    return LatencyTable(list(net.op_names), ops, float(statistics.median(fixed)), tile_px, device, torch.get_num_threads())


def expected_latency(weights: Tensor, lut: Tensor, fixed_ms: float) -> Tensor:
    """``fixed + Σ weights[c, e, o] · lut[c, o]`` (ms), differentiable in ``weights``.

    Parameters
    ----------
    weights : Tensor
        ``(cells, edges, ops)`` softmax edge weights.
    lut : Tensor
        ``(cells, ops)`` milliseconds (:meth:`LatencyTable.tensor`).
    fixed_ms : float
        Latency of the fixed parts.
    """
    return fixed_ms + (weights * lut.to(weights)[:, None, :]).sum()


def latency_penalty(expected_ms: Tensor, target_ms: float, weight: float) -> Tensor:
    """Hinge ``weight · max(0, expected/target − 1)``: zero at or below the target."""
    return weight * torch.relu(expected_ms / target_ms - 1.0)


def measure_network(
    module: nn.Module, tile_px: int = 512, *, in_channels: int = 3, device: str = "cpu", repeats: int = 7, warmup: int = 2, rounds: int = 3
) -> float:
    """Measured latency (ms) of a network on one ``tile_px``² tile, batch 1: median over ``rounds`` medians."""
    dev = torch.device(device)
    module = module.to(dev)
    x = torch.randn(1, in_channels, tile_px, tile_px, device=dev)
    return float(statistics.median(time_module(module, x, repeats, warmup) for _ in range(max(rounds, 1))))
