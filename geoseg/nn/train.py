"""``geoseg train nn``: train a raster classifier in one of its modes.

The modes: ``supervised`` (:mod:`geoseg.nn.supervised`, resumable), ``uda`` (mean-teacher domain
adaptation, :mod:`geoseg.nn.uda`) and ``ssl`` (class-balanced self-training,
:mod:`geoseg.nn.selftrain`); docs/TRAINING_MODES.md. Each runs under the same torch settings
(:func:`geoseg.nn.fitting.torch_settings`) from the same pieces (:mod:`geoseg.nn.fitting`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.nn.config import TrainConfig
from geoseg.nn.fitting import SceneData, TrainResult, resolve_device, torch_settings
from geoseg.nn.selftrain import run_selftraining
from geoseg.nn.supervised import run_supervised
from geoseg.nn.uda import run_uda

__all__ = ["SceneData", "TrainResult", "train"]


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
        Checkpoint written after every epoch (model + optimizer + training state).
    resume : path-like, optional
        Checkpoint to continue from (its epoch count, weights and optimizer state).
    best_path : path-like, optional
        The best model so far is written there whenever it improves.
    progress : bool
        Show a progress bar on stderr.
    unlabeled_data : sequence of SceneData
        Unlabelled scenes for ``config.mode`` ``uda`` (target domain, :mod:`geoseg.nn.uda`) or
        ``ssl`` (:mod:`geoseg.nn.selftrain`); their ``labels`` are used only to report
        pseudo-label IoU (all 255 when unknown). These modes write no checkpoint and cannot resume.

    Returns
    -------
    TrainResult
    """
    if not train_data:
        raise InputMismatchError("training needs at least one scene")
    if config.mode != "supervised":
        if resume is not None or checkpoint_path is not None:
            raise ConfigError(f"mode {config.mode}: checkpoints and resuming are only supported for mode supervised")
        if not unlabeled_data:
            raise InputMismatchError(f"mode {config.mode} needs unlabelled scenes (--unlabeled or data.unlabeled)")
    n_bands = train_data[0].image.shape[0]
    bands = list(config.data.bands) if config.data.bands else list(range(1, min(3, n_bands) + 1))
    device = resolve_device(config.device)
    with torch_settings(config.threads):
        if config.mode == "uda":
            return run_uda(config, train_data, unlabeled_data, val_data, bands, device, best_path, progress)
        if config.mode == "ssl":
            return run_selftraining(config, train_data, unlabeled_data, val_data, bands, device, best_path, progress)
        return run_supervised(config, train_data, val_data, bands, device, checkpoint_path, resume, best_path, progress)
