"""Every training mode resumes: a run continued from the checkpoint of an earlier epoch ends with
the same weights and history as the uninterrupted run (the snapshot of each checkpoint write
stands in for a run killed after that epoch)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import geoseg.nn.fitting
import geoseg.nn.quant.bpnas
import geoseg.nn.quant.gdrq
import geoseg.nn.search.retrain
import geoseg.nn.search.search
import geoseg.nn.selftrain
import geoseg.sequence.train
from geoseg.classifiers.training_data import mask_labels
from geoseg.cli.main import cli
from geoseg.errors import ConfigError, InputMismatchError, ModelFileError
from geoseg.modelfile import load_model
from geoseg.nn.checkpoint import read_checkpoint, save_checkpoint
from geoseg.nn.config import load_train_config
from geoseg.nn.modelfile import load_nn_model
from geoseg.nn.quant.bpnas import search_bits
from geoseg.nn.quant.gdrq import layer_plan, load_quant_config, quantize_finetune, resumed_checkpoint, uniform_bits
from geoseg.nn.search.config import load_search_config
from geoseg.nn.search.run import run_gas
from geoseg.nn.train import SceneData, train
from geoseg.raster import read_raster
from geoseg.sequence.train import load_sequence_train_config, train_sequence_model
from tests.nn.conftest import SAMPLE, scene_b
from tests.nn.test_gas_search import TINY_SEARCH
from tests.nn.test_quant_cli import DATA, QUICK
from tests.nn.test_uda import TINY_CLI


def _snapshots(monkeypatch: pytest.MonkeyPatch, module: object, tag: str = "") -> list[Path]:
    """Copy every checkpoint ``module`` writes to ``<name>.<tag><n>.npz`` (n = 1, 2, ...); the copies are returned as written."""
    real = module.save_checkpoint  # type: ignore[attr-defined]
    copies: list[Path] = []

    def save(path: Path, *args: object, **kwargs: object) -> Path:
        out = real(path, *args, **kwargs)
        copies.append(Path(shutil.copy(out, Path(path).with_suffix(f".{tag}{len(copies) + 1}.npz"))))
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
    with pytest.raises(ModelFileError, match=r"s\.ckpt\.npz: a checkpoint of training mode 'supervised', this run is 'uda'"):
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


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sb = b.state_dict()
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), sb[name].numpy(), err_msg=name)


@pytest.mark.parametrize("resume_from", ["search2", "retrain1"])
def test_architecture_search_resumes_in_either_phase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume_from: str) -> None:
    cfg = load_search_config(None, [*TINY_SEARCH, "search.epochs=3", "search.iterations_per_epoch=4", "retrain.epochs=2", "latency.target_ms=5"])
    copies = {"search": _snapshots(monkeypatch, geoseg.nn.search.search, "s"), "retrain": _snapshots(monkeypatch, geoseg.nn.search.retrain, "r")}
    full = run_gas(cfg, [scene_b()], checkpoint_path=tmp_path / "gas.ckpt.npz")
    assert (len(copies["search"]), len(copies["retrain"])) == (3, 2)
    resumed = run_gas(cfg, [scene_b()], resume=copies[resume_from[:-1]][int(resume_from[-1]) - 1])
    assert resumed.search.genotype == full.search.genotype and resumed.lut == full.lut
    np.testing.assert_array_equal(resumed.search.weights, full.search.weights)
    _same_state(resumed.model.module, full.model.module)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.model.training["history"]) == strip(full.model.training["history"])
    assert strip(resumed.search.history) == strip(full.search.history)


def test_quantization_fine_tuning_resumes_exactly(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_nn_model(tiny_model)
    cfg = load_quant_config(None, [*QUICK, "iterations=8"])
    macs, ends = layer_plan(model, 256)
    bits = uniform_bits(macs, ends, 4, 4, 8)
    copies = _snapshots(monkeypatch, geoseg.nn.quant.gdrq)
    full = quantize_finetune(model, [scene_b()], bits, cfg, macs=macs, progress=False, checkpoint_path=tmp_path / "q.ckpt.npz")
    assert len(copies) == 8
    resumed = quantize_finetune(model, [scene_b()], bits, cfg, macs=macs, progress=False, resume=resumed_checkpoint(copies[2], model))
    _same_state(resumed.model.module, full.model.module)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    other = load_nn_model(tiny_model)
    next(other.module.parameters()).data.add_(1.0)
    with pytest.raises(ModelFileError, match=r"q\.ckpt\.3\.npz: a checkpoint of the quantization of another float model"):
        resumed_checkpoint(copies[2], other)


def test_bit_width_search_resumes_exactly(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_nn_model(tiny_model)
    cfg = load_quant_config(None, QUICK)
    budget = 0.5 * sum(layer_plan(model, cfg.bitops_tile_px)[0].values()) * 64
    copies = _snapshots(monkeypatch, geoseg.nn.quant.bpnas)
    full = search_bits(model, [scene_b()], budget, cfg, progress=False, checkpoint_path=tmp_path / "b.ckpt.npz")
    assert len(copies) == cfg.search.iterations
    resumed = search_bits(model, [scene_b()], budget, cfg, progress=False, resume=resumed_checkpoint(copies[1], model))
    assert resumed.summary() == full.summary()
    with pytest.raises(ConfigError, match=r"a search under .* BitOPs, this run asks for"):
        search_bits(model, [scene_b()], budget / 2, cfg, progress=False, resume=resumed_checkpoint(copies[1], model))


def test_cli_quantize_resumes_each_phase_from_its_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.npz"
    base = ["quantize", str(tiny_model), *DATA, "-o", str(out), "--no-progress", *[f"--set={v}" for v in QUICK]]
    search = [*base, "--search", "--budget-bitops", "12G"]
    res = CliRunner().invoke(cli, search)
    assert res.exit_code == 0, res.output
    ckpt = tmp_path / "q.ckpt.npz"
    assert read_checkpoint(ckpt, "quantize").extra["phase"] == "finetune"  # the last phase written
    first = load_model(out)[1]["quantization"]
    res = CliRunner().invoke(cli, [*base, "--w-bits", "8", "--resume", str(ckpt)])  # a fine-tuning goes on with the checkpoint's bits
    assert res.exit_code == 0, res.output
    again = load_model(out)[1]["quantization"]
    assert again["layers"] == first["layers"] and again["search"] == first["search"]
    search_ckpt = tmp_path / "search.ckpt.npz"
    shutil.copy(ckpt, search_ckpt)
    ck = read_checkpoint(ckpt, "quantize")
    save_checkpoint(search_ckpt, "quantize", ck.state, model=(ck.arrays, {k: v for k, v in ck.metadata.items() if k != "checkpoint"}),
                    extra={**ck.extra, "phase": "search"})  # fmt: skip
    res = CliRunner().invoke(cli, [*base, "--w-bits", "4", "--resume", str(search_ckpt)])
    assert res.exit_code == 2 and "checkpoint of a BP-NAS search: resume it with --search" in res.output


@pytest.mark.parametrize(("other", "difference"), [(["model.architecture=decouple"], "architecture 'baseline' (the config: 'decouple')"), (["model.width=8"], "width 4 (the config: 8)")])
def test_a_checkpoint_of_another_network_is_refused(tmp_path: Path, other: list[str], difference: str) -> None:
    """Resuming with another config trained the checkpoint's network and recorded the config's in the model file."""
    tiny = ["threads=1", "model.architecture=baseline", "model.width=4", "epochs=1", "iterations_per_epoch=1", "data.batch_size=2", "data.crop_px=64"]
    ckpt = tmp_path / "base.ckpt.npz"
    train(load_train_config(None, tiny), [scene_b()], checkpoint_path=ckpt, best_path=tmp_path / "base.npz", progress=False)
    with pytest.raises(InputMismatchError, match=rf"base.ckpt.npz: the checkpoint's network differs from this run's config: {re.escape(difference)}"):
        train(load_train_config(None, [*tiny, "epochs=2", *other]), [scene_b()], checkpoint_path=tmp_path / "b.ckpt.npz", resume=ckpt, progress=False)
