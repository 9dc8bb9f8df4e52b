"""The whole GAS run: measure the lookup table, search, derive, measure, retrain, write the model.

See :mod:`geoseg.nn.search` for the parts and GAS (arXiv 1909.06793) for the method. The
result is an ordinary nn model file (:mod:`geoseg.nn.modelfile`) of architecture ``gas`` whose
hyper-parameters hold the genotype, so :func:`geoseg.nn.models.build_model` and the
``nn_classify`` step rebuild it; the metadata's ``training.search`` holds the readable
genotype, the measured lookup table, the target, predicted and measured latencies, whether
the measured latency missed the target (``target_missed``, also logged as a warning) and the
search history.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.nn.arrays import band_statistics, normalise
from geoseg.nn.checkpoint import Checkpoint, read_checkpoint
from geoseg.nn.data import TrainingScene
from geoseg.nn.fitting import SceneData, resolve_device, torch_settings
from geoseg.nn.modelfile import NNModel, save_nn_model
from geoseg.nn.search.config import SearchConfig
from geoseg.nn.search.latency import LatencyTable, build_lut, measure_network
from geoseg.nn.search.retrain import retrain
from geoseg.nn.search.search import MODE, ArchParams, SearchOutcome, search_architecture
from geoseg.nn.search.space import GASNet, SuperNet, genotype_text

__all__ = ["GASResult", "run_gas"]

log = logging.getLogger("geoseg.nn")


@dataclass
class GASResult:
    """Outcome of :func:`run_gas`: the retrained model, the search, the table and the measured latency (ms per tile)."""

    model: NNModel
    search: SearchOutcome
    lut: LatencyTable
    measured_ms: float
    best_iou: float


def _bands(config: SearchConfig, data: Sequence[SceneData]) -> list[int]:
    n = data[0].image.shape[0]
    bands = list(config.data.bands) if config.data.bands else list(range(1, min(3, n) + 1))
    for s in data:
        if s.image.shape[0] < max(bands):
            raise InputMismatchError(f"{s.source}: has {s.image.shape[0]} band(s), the search reads bands {bands}")
    return bands


def _warn_target_missed(config: SearchConfig, measured_ms: float, predicted_ms: float) -> None:
    """Say that the derived network is slower than the target, and how to search closer to it."""
    log.warning(
        "warning: the derived network takes %.2f ms per %d px tile, above the target %g ms (LUT predicted %.2f ms); the model is "
        "written with target_missed in its metadata; for a faster one search again with a lower --target-ms, a larger "
        "latency.weight (now %g) or a narrower space.width (now %d)",
        measured_ms, config.latency.tile_px, config.latency.target_ms, predicted_ms, config.latency.weight, config.space.width,
    )  # fmt: skip


def run_gas(
    config: SearchConfig,
    train_data: Sequence[SceneData],
    val_data: Sequence[SceneData] = (),
    *,
    output: str | os.PathLike[str] | None = None,
    progress: bool = False,
    lut: LatencyTable | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> GASResult:
    """Search a network under ``config.latency.target_ms``, retrain it and (optionally) write it.

    Parameters
    ----------
    config : SearchConfig
        The run (``latency.target_ms`` must be set).
    train_data : sequence of SceneData
        Raw training scenes (split in two for the search; all of them for retraining).
    val_data : sequence of SceneData
        Raw validation scenes for best-epoch selection of the retraining (optional).
    output : path-like, optional
        Model file to write.
    progress : bool
        Progress bars on stderr.
    lut : LatencyTable, optional
        A table measured earlier for the same space, tile and device (e.g. to compare several
        targets against one table); by default it is measured now.
    checkpoint_path : path-like, optional
        Checkpoint written after every epoch of the search and of the retraining.
    resume : path-like, optional
        A checkpoint of the same config to continue from: the search goes on with its lookup
        table, or the retraining with its derived network.

    Raises
    ------
    InputMismatchError
        No training scenes, or a scene without the bands read.
    ConfigError
        No target latency, or CUDA asked for but absent.
    """
    if not train_data:
        raise InputMismatchError("the architecture search needs at least one training scene")
    device = resolve_device(config.device)
    with torch_settings(config.threads):
        return _run(config, train_data, val_data, device, output, progress, lut, checkpoint_path, read_checkpoint(resume, MODE) if resume else None)


def _run(
    config: SearchConfig,
    train_data: Sequence[SceneData],
    val_data: Sequence[SceneData],
    device: str,
    output: Any,
    progress: bool,
    lut: LatencyTable | None,
    checkpoint_path: str | os.PathLike[str] | None,
    ck: Checkpoint | None,
) -> GASResult:
    if config.latency.target_ms is None:
        raise ConfigError("latency.target_ms is not set: give --target-ms")
    bands = _bands(config, train_data)
    mean, std = band_statistics([s.image[[b - 1 for b in bands]] for s in train_data])
    scenes = [TrainingScene(normalise(s.image[[b - 1 for b in bands]], mean, std), s.labels) for s in train_data]
    sp = config.space
    phase = ck.extra["phase"] if ck is not None else None
    if phase == "retrain":
        assert ck is not None
        search_info = dict(ck.metadata["training"]["search"])
        lut, outcome = LatencyTable.from_dict(search_info["lut"], sp.ops), SearchOutcome.from_json(ck.extra["outcome"])
        log.info("resuming the retraining of the derived network from %s", ck.path)
    else:
        if ck is not None:
            lut = LatencyTable.from_dict(ck.extra["lut"], sp.ops)
            log.info("resuming the search from %s after epoch %d (with its latency table)", ck.path, ck.state.epoch)
        outcome, lut = _search(config, bands, scenes, lut, device, progress, checkpoint_path, ck)
    text = genotype_text(outcome.genotype, sp.strides, sp.nodes)
    for line in text:
        log.info("derived %s", line)
    hyper: dict[str, Any] = {
        "in_channels": len(bands),
        "num_classes": 2,
        "width": sp.width,
        "strides": list(sp.strides),
        "nodes": sp.nodes,
        "genotype": outcome.genotype,
        "centerline_head": False,
    }
    torch.manual_seed(config.seed)
    module = GASNet(**hyper)
    if phase != "retrain":
        measured = measure_network(
            module, config.latency.tile_px, in_channels=len(bands), device=device, repeats=config.latency.repeats, warmup=config.latency.warmup,
            rounds=config.latency.rounds,
        )  # fmt: skip
        search_info = {
            "method": "GAS (arXiv 1909.06793), first-order, latency hinge",
            "gcn": config.search.gcn,
            "genotype": text,
            "target_ms": config.latency.target_ms,
            "expected_ms": outcome.expected_ms,
            "predicted_ms": outcome.predicted_ms,
            "measured_ms": measured,
            "target_missed": measured > config.latency.target_ms,
            "edge_weights": np.round(outcome.weights, 4).tolist(),
            "ops": list(sp.ops),
            "lut": lut.to_dict(),
            "history": outcome.history,
        }
    measured = float(search_info["measured_ms"])
    log.info("derived network: %.2f ms per %d px tile measured (LUT %.2f ms, target %g ms)", measured, config.latency.tile_px, outcome.predicted_ms,
             config.latency.target_ms)  # fmt: skip
    if search_info["target_missed"]:
        _warn_target_missed(config, measured, outcome.predicted_ms)
    model = NNModel(
        module=module, architecture="gas", hyper=hyper, bands=bands, band_mean=[float(v) for v in mean], band_std=[float(v) for v in std],
        train_gsd_m=float(np.mean([s.gsd_m for s in train_data])), tile_px=config.inference.tile_px, overlap_px=config.inference.overlap_px,
    )  # fmt: skip
    model.training = {"config": config.model_dump(mode="json"), "scenes": [s.source for s in train_data], "search": search_info}
    history, best_epoch, best_iou = retrain(
        config, model, scenes, val_data, device=device, progress=progress, checkpoint_path=checkpoint_path,
        resume=ck if phase == "retrain" else None, extra={"outcome": outcome.to_json()},
    )  # fmt: skip
    model.training.update(history=history, best_epoch=best_epoch, best_val_iou=None if np.isnan(best_iou) else best_iou)
    if output is not None:
        save_nn_model(Path(output), model)
    return GASResult(model, outcome, lut, measured, best_iou)


def _search(
    config: SearchConfig,
    bands: list[int],
    scenes: list[TrainingScene],
    lut: LatencyTable | None,
    device: str,
    progress: bool,
    checkpoint_path: str | os.PathLike[str] | None,
    ck: Checkpoint | None,
) -> tuple[SearchOutcome, LatencyTable]:
    """The search phase: the super-network, its lookup table (measured unless given) and the search."""
    sp = config.space
    torch.manual_seed(config.seed)
    net = SuperNet(len(bands), 2, sp.width, sp.strides, sp.nodes, sp.ops)
    arch = ArchParams(len(sp.strides), len(net.edges), len(sp.ops), config.search.gcn, config.search.gcn_hidden, config.search.gcn_gamma)
    if lut is not None and (len(lut.ops) != len(sp.strides) or lut.op_names != list(sp.ops) or lut.tile_px != config.latency.tile_px):
        raise ConfigError("the given latency table does not fit the search space, operations or tile size of the config")
    lut = lut or build_lut(
        net, config.latency.tile_px, device=device, repeats=config.latency.repeats, warmup=config.latency.warmup, rounds=config.latency.rounds,
        in_channels=len(bands),
    )  # fmt: skip
    log.info("latency table (%s, %d thread(s), %d px tile): fixed parts %.2f ms", device, lut.threads, lut.tile_px, lut.fixed_ms)
    for k, row in enumerate(lut.ops):
        log.info("  cell %d (stride %d): %s", k, sp.strides[k], ", ".join(f"{n} {v:.2f}" for n, v in row.items()))
    outcome = search_architecture(config, net, arch, scenes, lut, device=device, progress=progress, checkpoint_path=checkpoint_path, resume=ck)
    return outcome, lut
