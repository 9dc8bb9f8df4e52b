"""Every training mode resumes: a run continued from the checkpoint of an earlier epoch ends with
the same weights and history as the uninterrupted run (the snapshot of each checkpoint write
stands in for a run killed after that epoch)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import geoseg.nn.fitting
import geoseg.nn.selftrain
import geoseg.sequence.train
from geoseg.classifiers.training_data import mask_labels
from geoseg.nn.config import load_train_config
from geoseg.nn.modelfile import load_nn_model
from geoseg.nn.train import SceneData, train
from geoseg.raster import read_raster
from geoseg.sequence.train import load_sequence_train_config, train_sequence_model
from tests.nn.conftest import SAMPLE, scene_b
from tests.nn.test_uda import TINY_CLI


def _snapshots(monkeypatch: pytest.MonkeyPatch, module: object) -> list[Path]:
    """Copy every checkpoint ``module`` writes to ``<name>.<n>.npz`` (n = 1, 2, ...); the copies are returned as written."""
    real = module.save_checkpoint  # type: ignore[attr-defined]
    copies: list[Path] = []

    def save(path: Path, *args: object, **kwargs: object) -> Path:
        out = real(path, *args, **kwargs)
        copies.append(Path(shutil.copy(out, Path(path).with_suffix(f".{len(copies) + 1}.npz"))))
        return out

    monkeypatch.setattr(module, "save_checkpoint", save)
    return copies


def _scene_a(labelled: bool) -> SceneData:
    scene = read_raster(SAMPLE / "scene_a.tif")
    labels = mask_labels(scene, SAMPLE / "scene_a_mask.tif") if labelled else np.full(scene.array.shape[1:], 255, np.uint8)
    return SceneData(scene.array, labels, scene.geo.gsd_m, scene.source)


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_nn_model(a).module.state_dict(), load_nn_model(b).module.state_dict()
    for name in wa:
        np.testing.assert_array_equal(wa[name].numpy(), wb[name].numpy(), err_msg=name)


@pytest.mark.parametrize(
    ("overrides", "resume_from", "extra"),
    [
        (["mode=uda", "epochs=2"], 1, {}),
        (["mode=ssl", "epochs=1", "ssl.rounds=2", "ssl.epochs_per_round=2"], 2, {"val_data": [_scene_a(True)]}),  # in round 1 of 0-2
        (["mode=ssl", "epochs=1", "ssl.rounds=2", "ssl.epochs_per_round=2"], 3, {}),  # round 1 done
    ],
    ids=["uda", "ssl-mid-round", "ssl-round-end"],
)
def test_modes_with_unlabelled_scenes_resume_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: list[str], resume_from: int, extra: dict[str, object]
) -> None:
    cfg = load_train_config(None, [*TINY_CLI, *overrides])
    copies = _snapshots(monkeypatch, geoseg.nn.selftrain if cfg.mode == "ssl" else geoseg.nn.fitting)
    run: Callable[..., object] = lambda **kw: train(cfg, [scene_b()], unlabeled_data=[_scene_a(False)], progress=False, **extra, **kw)  # noqa: E731
    full = run(best_path=tmp_path / "full.npz", checkpoint_path=tmp_path / "run.ckpt.npz")
    assert len(copies) == len(full.history) - (cfg.ssl.rounds if cfg.mode == "ssl" else 0)  # one checkpoint per epoch
    resumed = run(best_path=tmp_path / "resumed.npz", resume=copies[resume_from - 1])
    _same_weights(tmp_path / "full.npz", tmp_path / "resumed.npz")
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    np.testing.assert_equal((resumed.best_epoch, resumed.best_iou), (full.best_epoch, full.best_iou))  # NaN without validation


def test_a_checkpoint_of_another_mode_is_refused(tmp_path: Path) -> None:
    cfg = load_train_config(None, [*TINY_CLI, "epochs=1"])
    train(cfg, [scene_b()], checkpoint_path=tmp_path / "s.ckpt.npz", progress=False)
    uda = load_train_config(None, [*TINY_CLI, "mode=uda"])
    with pytest.raises(geoseg.errors.ModelFileError, match=r"s\.ckpt\.npz: a checkpoint of training mode 'supervised', this run is 'uda'"):
        train(uda, [scene_b()], unlabeled_data=[_scene_a(False)], resume=tmp_path / "s.ckpt.npz", progress=False)


def test_sequence_training_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_sequence_train_config(None, ["frame_size=32", "iterations=6", "n_sequences=2", "widths=[4,8,8]", "max_queries=1"])
    copies = _snapshots(monkeypatch, geoseg.sequence.train)
    full = train_sequence_model(cfg, checkpoint_path=tmp_path / "seq.ckpt.npz")
    assert len(copies) == 6  # 10 epochs of at least one iteration: 6
    resumed = train_sequence_model(cfg, resume=copies[2])
    for name, value in full.module.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), resumed.module.state_dict()[name].numpy(), err_msg=name)
    assert resumed.training["final_losses"] == full.training["final_losses"]
