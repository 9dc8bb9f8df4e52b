"""First-order alternating architecture search with a latency constraint (GAS, arXiv 1909.06793).

As in DARTS (Liu et al., arXiv 1806.09055) with its first-order approximation, the training
data is split in two: the super-network's weights ``w`` take AdamW steps on one split with
the architecture fixed, and the architecture parameters ``α`` (and the GCN of
:mod:`geoseg.nn.search.gcn`, when enabled) take Adam steps on the other split with the weights
fixed, minimising ``CE + weight · max(0, E[lat]/target − 1)``
(:mod:`geoseg.nn.search.latency`). Each cell has its own ``α`` (no sharing between cells, as in
GAS). After ``warmup_iterations`` weight-only steps the two updates alternate. The derived
architecture keeps, for every edge, the operation with the largest (GCN-transformed)
parameter, ``zero`` included, so a tight latency target can remove edges.

Where geoseg differs from GAS: first-order updates only (no unrolled second-order step),
OHEM cross-entropy of :mod:`geoseg.nn.losses` as the task loss, a hinge latency term, and the
data split is by scene (or the two halves of a single scene) rather than a random split of a
large dataset.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from geoseg.errors import ConfigError
from geoseg.nn.checkpoint import Checkpoint, save_checkpoint
from geoseg.nn.data import TrainingScene, sample_batch
from geoseg.nn.fit import FitPlan, FitState, fit
from geoseg.nn.fitting import loss_weights
from geoseg.nn.losses import segmentation_losses
from geoseg.nn.search.config import SearchConfig
from geoseg.nn.search.gcn import CellGCN
from geoseg.nn.search.latency import LatencyTable, expected_latency, latency_penalty
from geoseg.nn.search.space import SuperNet

#: Training mode name of GAS checkpoints (phases: search, retrain).
MODE = "gas"

__all__ = ["ArchParams", "SearchOutcome", "derive_genotype", "search_architecture", "split_scenes"]


class ArchParams(nn.Module):
    """Architecture parameters ``α`` of all cells ``(cells, edges, ops)`` and the optional GCN.

    Parameters
    ----------
    cells, edges, ops : int
        Shape of ``α``.
    gcn : bool
        Transform ``α`` by :class:`~geoseg.nn.search.gcn.CellGCN` before the softmax.
    gcn_hidden : int
        Hidden units of the GCN.
    gcn_gamma : float
        Weight of the GCN output.
    """

    def __init__(self, cells: int, edges: int, ops: int, gcn: bool = True, gcn_hidden: int = 16, gcn_gamma: float = 0.5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(1e-3 * torch.randn(cells, edges, ops))
        self.gcn = CellGCN(cells, edges * ops, gcn_hidden, gcn_gamma) if gcn else None

    def effective(self) -> Tensor:
        """``α' = α + γ·GCN(α)`` with the GCN, else ``α``."""
        return self.gcn(self.alpha) if self.gcn is not None else self.alpha

    def weights(self) -> Tensor:
        """Softmax edge weights over the operations, ``(cells, edges, ops)``."""
        return torch.softmax(self.effective(), dim=-1)


@dataclass
class SearchOutcome:
    """Result of :func:`search_architecture`.

    Attributes
    ----------
    genotype : list of list of str
        Derived operation per edge per cell.
    weights : numpy.ndarray
        Final softmax edge weights ``(cells, edges, ops)``.
    expected_ms : float
        Expected latency of the super-network's final weights.
    predicted_ms : float
        LUT latency of the derived network.
    history : list of dict
        Per epoch: mean CE, expected latency, penalty.
    """

    genotype: list[list[str]]
    weights: np.ndarray
    expected_ms: float
    predicted_ms: float
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (for checkpoints)."""
        return {"genotype": self.genotype, "weights": self.weights.tolist(), "expected_ms": self.expected_ms, "predicted_ms": self.predicted_ms,
                "history": self.history}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchOutcome:
        """The outcome :meth:`to_json` wrote."""
        weights = np.asarray(data["weights"], np.float32)
        return cls([list(c) for c in data["genotype"]], weights, float(data["expected_ms"]), float(data["predicted_ms"]), list(data["history"]))


def derive_genotype(weights: Tensor, op_names: Sequence[str]) -> list[list[str]]:
    """The strongest operation of every edge: ``argmax`` over the last axis of ``(cells, edges, ops)``."""
    idx = weights.argmax(dim=-1).tolist()
    return [[op_names[k] for k in cell] for cell in idx]


def split_scenes(scenes: Sequence[TrainingScene]) -> tuple[list[TrainingScene], list[TrainingScene]]:
    """Two disjoint data splits (weights, architecture): alternate scenes, or one scene's two halves by rows."""
    if len(scenes) >= 2:
        return list(scenes[0::2]), list(scenes[1::2])
    s = scenes[0]
    half = s.labels.shape[0] // 2

    def part(rows: slice) -> TrainingScene:
        pick = lambda a: None if a is None else a[..., rows, :]  # noqa: E731
        return TrainingScene(s.image[:, rows], s.labels[rows], pick(s.edges), pick(s.centerlines))

    return [part(slice(0, half))], [part(slice(half, None))]


def search_architecture(
    config: SearchConfig,
    net: SuperNet,
    arch: ArchParams,
    scenes: Sequence[TrainingScene],
    lut: LatencyTable,
    *,
    device: str = "cpu",
    progress: bool = False,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: Checkpoint | None = None,
) -> SearchOutcome:
    """Alternate weight and architecture updates, then derive the genotype.

    Parameters
    ----------
    config : SearchConfig
        ``search``, ``latency`` (``target_ms`` must be set), ``data`` (crops, augmentation), ``loss``.
    net : SuperNet
        The super-network (trained in place).
    arch : ArchParams
        Architecture parameters (updated in place).
    scenes : sequence of TrainingScene
        Normalised training scenes, split by :func:`split_scenes`.
    lut : LatencyTable
        Measured latencies of ``net``'s operations.
    device : str
        Torch device of the search.
    progress : bool
        Progress bar on stderr.
    checkpoint_path : path-like, optional
        Checkpoint (phase ``search``, with ``lut``) written after every epoch.
    resume : Checkpoint, optional
        A ``search`` checkpoint of the same config to continue from.
    """
    target = config.latency.target_ms
    if target is None:
        raise ConfigError("latency.target_ms is not set: give --target-ms")
    s = config.search
    net.to(device).train()
    arch.to(device)
    w_opt = torch.optim.AdamW(net.parameters(), lr=s.weight_lr, weight_decay=s.weight_decay)
    a_opt = torch.optim.Adam(arch.parameters(), lr=s.arch_lr, betas=(0.5, 0.999), weight_decay=s.arch_weight_decay)
    lut_t = lut.tensor().to(device)
    weight_split, arch_split = split_scenes(scenes)
    aug = config.data.augment.augmentation()
    lw = loss_weights(config.loss)
    cw = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)
    crop = s.crop_px or config.data.crop_px
    size = s.batch_size or config.data.batch_size

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        out = {}
        if it >= s.warmup_iterations:
            batch = sample_batch(arch_split, size, crop, aug, gen)
            weights = arch.weights()
            ce = segmentation_losses(net.forward_arch(batch.image.to(device), weights), batch.labels.to(device), weights=lw, class_weights=cw)["total"]
            exp = expected_latency(weights, lut_t, lut.fixed_ms)
            pen = latency_penalty(exp, target, config.latency.weight)
            a_opt.zero_grad(set_to_none=True)
            (ce + pen).backward()
            a_opt.step()
            out = {"arch_ce": float(ce.detach()), "expected_ms": float(exp.detach()), "penalty": float(pen.detach())}
        batch = sample_batch(weight_split, size, crop, aug, gen)
        with torch.no_grad():
            weights = arch.weights()
        loss = segmentation_losses(net.forward_arch(batch.image.to(device), weights), batch.labels.to(device), weights=lw, class_weights=cw)["total"]
        w_opt.zero_grad(set_to_none=True)
        loss.backward()
        w_opt.step()
        return {"ce": float(loss.detach()), **out}

    plan = FitPlan(s.epochs * s.iterations_per_epoch, s.iterations_per_epoch, config.seed, desc="search", progress=progress)
    if resume is not None:
        resume.load_module("supernet", net)
        resume.load_module("arch", arch)
        resume.load_optimizer("weights", w_opt)
        resume.load_optimizer("arch", a_opt)

    def write(state: FitState) -> None:
        assert checkpoint_path is not None
        modules, optimizers = {"supernet": net, "arch": arch}, {"weights": w_opt, "arch": a_opt}
        save_checkpoint(checkpoint_path, MODE, state, modules=modules, optimizers=optimizers, extra={"phase": "search", "lut": lut.to_dict()})

    on_epoch_end = write if checkpoint_path is not None else None
    history = fit(step, plan, tracked=net, state=resume.state if resume else None, on_epoch_end=on_epoch_end).history
    with torch.no_grad():
        weights = arch.weights().cpu()
    genotype = derive_genotype(weights, lut.op_names)
    exp_final = float(expected_latency(weights, lut.tensor(), lut.fixed_ms))
    return SearchOutcome(genotype, weights.numpy(), exp_final, lut.predict(genotype), history)
