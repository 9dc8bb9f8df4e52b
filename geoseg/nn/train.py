"""``geoseg train nn``: train a raster classifier in one of its modes.

Each mode is one module with a ``run(TrainingRun) -> TrainResult`` function, registered in
:data:`MODES`: ``supervised`` (:mod:`geoseg.nn.supervised`), ``uda`` (mean-teacher domain
adaptation, :mod:`geoseg.nn.uda`) and ``ssl`` (class-balanced self-training,
:mod:`geoseg.nn.selftrain`); docs/TRAINING_MODES.md. Each runs its batch step through the one
training loop (:func:`geoseg.nn.fit.fit`, which also makes every mode resumable) under the same
torch settings (:func:`geoseg.nn.fitting.torch_settings`) and arithmetic (``precision``:
:meth:`geoseg.nn.fitting.TrainingRun.forward_precision`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import torch

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.nn.config import TrainConfig
from geoseg.nn.fitting import SceneData, TrainingRun, TrainResult, resolve_device, torch_settings
from geoseg.nn.selftrain import run_selftraining
from geoseg.nn.supervised import run_supervised
from geoseg.nn.uda import run_uda

__all__ = ["MODES", "SceneData", "TrainResult", "train"]

log = logging.getLogger("geoseg.nn")

#: The training modes: ``config.mode`` -> (runner, whether it needs unlabelled scenes).
MODES: dict[str, tuple[Callable[[TrainingRun], TrainResult], bool]] = {
    "supervised": (run_supervised, False),
    "uda": (run_uda, True),
    "ssl": (run_selftraining, True),
}


def train(
    config: TrainConfig,
    train_data: Sequence[SceneData],
    val_data: Sequence[SceneData] = (),
    *,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    best_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    unlabeled_data: Sequence[SceneData] = (),
) -> TrainResult:
    """Train a raster classifier.

    Parameters
    ----------
    config : TrainConfig
        The run's settings (``config.data`` paths are not read here).
    train_data : sequence of SceneData
        Training scenes, all with the same bands.
    val_data : sequence of SceneData
        Validation scenes; without them the last epoch is the best.
    checkpoint_path : path-like, optional
        Checkpoint written after every epoch (model, optimizer and the mode's training state).
    resume : path-like, optional
        Checkpoint of the same mode to continue from; the run ends as the uninterrupted one.
    best_path : path-like, optional
        The model is written there (whenever it improves, for the modes that select per epoch).
    progress : bool
        Show a progress bar on stderr.
    unlabeled_data : sequence of SceneData
        Unlabelled scenes for ``config.mode`` ``uda`` (target domain, :mod:`geoseg.nn.uda`) or
        ``ssl`` (:mod:`geoseg.nn.selftrain`); their ``labels`` are used only to report
        pseudo-label IoU (all 255 when unknown).

    Returns
    -------
    TrainResult
    """
    if not train_data:
        raise InputMismatchError("training needs at least one scene")
    if config.mode not in MODES:
        raise ConfigError(f"unknown training mode {config.mode!r} (known: {', '.join(MODES)})")
    runner, needs_unlabeled = MODES[config.mode]
    if needs_unlabeled and not unlabeled_data:
        raise InputMismatchError(f"mode {config.mode} needs unlabelled scenes (--unlabeled or data.unlabeled)")
    n_bands = train_data[0].image.shape[0]
    bands = list(config.data.bands) if config.data.bands else list(range(1, min(3, n_bands) + 1))
    for scene in (*train_data, *val_data, *unlabeled_data):
        if max(bands) > scene.image.shape[0]:
            raise InputMismatchError(f"{scene.source}: has {scene.image.shape[0]} band(s); data.bands {bands} asks for band {max(bands)}")
    run = TrainingRun(
        config, list(train_data), list(val_data), list(unlabeled_data), bands, resolve_device(config.device), checkpoint_path, resume, best_path, progress
    )
    with torch_settings(config.threads):
        n = torch.get_num_threads()
        threads = f"{n} thread{'s' if n > 1 else ''}" + (", tuned as it runs (threads: auto)" if config.threads == "auto" else "")
        log.info("training %s on %s in %s arithmetic, %s", config.mode, run.device, run.precision, threads)
        return runner(run)
