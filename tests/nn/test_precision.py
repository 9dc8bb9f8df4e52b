"""Training arithmetic (``precision``): bf16 mixed precision in every mode of ``geoseg train nn``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.nn.config import load_train_config
from geoseg.nn.fitting import native_bf16, resolve_precision
from geoseg.nn.train import SceneData, train
from geoseg.raster import read_raster
from tests.nn.conftest import SAMPLE, scene_b
from tests.nn.test_uda import TINY_CLI


def _unlabelled() -> SceneData:
    scene = read_raster(SAMPLE / "scene_a.tif")
    return SceneData(scene.array, np.full(scene.array.shape[1:], 255, np.uint8), scene.geo.gsd_m, scene.source)


def _conv_dtypes(monkeypatch: pytest.MonkeyPatch) -> set[tuple[torch.dtype, bool]]:
    """The dtype of every 2-D convolution's output from now on, and whether its input was channels-last."""
    seen: set[tuple[torch.dtype, bool]] = set()
    forward = torch.nn.Conv2d.forward

    def spy(self: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        out = forward(self, x)
        seen.add((out.dtype, x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()))
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    return seen


def _saved_layout_is_contiguous(module: torch.nn.Module) -> bool:
    return all(p.is_contiguous() for p in module.parameters())


@pytest.mark.parametrize("mode", ["supervised", "uda", "ssl"])
def test_bf16_runs_the_forward_pass_in_bfloat16_and_keeps_float32_weights(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    extra = ["ssl.rounds=1", "ssl.epochs_per_round=1"] if mode == "ssl" else []
    cfg = load_train_config(None, [*TINY_CLI, f"mode={mode}", "epochs=1", "precision=bf16", *extra])
    seen = _conv_dtypes(monkeypatch)
    unlabelled = [_unlabelled()] if mode != "supervised" else []
    result = train(cfg, [scene_b()], unlabeled_data=unlabelled, progress=False)
    assert (torch.bfloat16, True) in seen  # bf16 convolutions on channels-last inputs (TrainingRun.images)
    assert {p.dtype for p in result.model.module.parameters()} == {torch.float32}
    assert _saved_layout_is_contiguous(result.model.module)  # released in the default layout
    losses = [r["loss_total"] for r in result.history if "loss_total" in r]  # (self-training's pseudo-labelling rows have none)
    assert losses and np.isfinite(losses).all()


def test_fp32_runs_in_float32_and_differs_from_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _conv_dtypes(monkeypatch)
    fp32 = train(load_train_config(None, [*TINY_CLI, "epochs=1", "precision=fp32"]), [scene_b()], progress=False)
    assert seen == {(torch.float32, False)}  # float32 keeps the default layout
    bf16 = train(load_train_config(None, [*TINY_CLI, "epochs=1", "precision=bf16"]), [scene_b()], progress=False)
    assert fp32.history[-1]["loss_total"] != bf16.history[-1]["loss_total"]
    assert fp32.history[-1]["loss_total"] == pytest.approx(bf16.history[-1]["loss_total"], rel=0.1)  # the same training, rounded


def test_bf16_training_is_reproducible() -> None:
    cfg = load_train_config(None, [*TINY_CLI, "epochs=1", "precision=bf16"])
    a, b = (train(cfg, [scene_b()], progress=False).model.module.state_dict() for _ in range(2))
    for name in a:
        np.testing.assert_array_equal(a[name].numpy(), b[name].numpy(), err_msg=name)


def test_auto_is_bf16_only_where_native() -> None:
    assert resolve_precision("auto", "cpu") == ("bf16" if native_bf16("cpu") else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="precision"):
        load_train_config(None, ["precision=fp16"])

