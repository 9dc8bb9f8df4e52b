"""Tiled inference and model files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.errors import InputMismatchError, ModelFileError
from geoseg.nn.inference import axis_tiles, blend_window, predict, predict_tiled, tile_origins
from geoseg.nn.modelfile import NNModel, load_nn_model, save_nn_model
from geoseg.nn.models import build_model


def test_tiles_cover_with_overlap() -> None:
    starts = tile_origins(300, 128, 32)
    assert starts[0] == 0 and starts[-1] == 300 - 128
    assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:]))
    assert tile_origins(100, 128, 32) == [0]
    w = blend_window(64, 16, True, False, False, True)
    assert w[0, 0] < 0.05 and w[-1, 0] == 1.0 and w[-1, -1] < 0.05


def test_axis_tiles_classify_fewer_pixels_and_keep_the_overlap() -> None:
    for size in range(100, 2100, 37):
        side, starts = axis_tiles(size, 256, 64, 320)
        assert 256 <= side <= 320 and side % 16 == 0
        assert len(starts) * side <= len(tile_origins(size, 256, 64)) * 256  # never more than fixed 256-px tiles
        assert starts[0] == 0 and starts[-1] + side == max(size, side)  # the tiles cover the axis
        assert all(b - a <= side - 64 for a, b in zip(starts, starts[1:]))  # and overlap by 64 px or more
    assert axis_tiles(1028, 256, 64, 320) == (320, [0, 236, 472, 708])  # 4 tiles of 320 px, not 6 of 256
    assert axis_tiles(1028, 256, 64, 256) == (256, tile_origins(1028, 256, 64))  # no growth allowed: fixed tiles


def test_rectangular_blend_windows_ramp_each_side() -> None:
    w = blend_window((32, 48), 8, True, False, False, True)
    assert w.shape == (32, 48)
    assert w[0, 0] < 0.1 and w[-1, 0] == 1.0 and w[16, -1] < 0.1 and w[16, 20] == 1.0


class _Pointwise(torch.nn.Module):
    """A classifier without spatial context: each pixel's classes depend on that pixel only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"seg": self.conv(x)}


def _road_band_image() -> np.ndarray:
    image = np.random.default_rng(0).normal(size=(3, 200, 264)).astype(np.float32)
    image[:, 90:110, :] += 2.0  # a bright road-like band
    return image


def test_tiled_inference_of_a_pointwise_model_equals_whole_image() -> None:
    """Tiles placed and blend weights normalised exactly: without context, tiling changes nothing."""
    model, image = _Pointwise(), _road_band_image()
    whole = predict(model, image)
    tiled = predict_tiled(model, image, tile_px=128, overlap_px=48, batch_size=3)
    assert tiled.shape == whole.shape == (2, 200, 264)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tiled_inference_of_a_trained_model_is_close_to_whole_image(tiny_model: Path) -> None:
    """The decouple model's ASPP pools over the whole input, so tiles see less context: close, not equal."""
    model = load_nn_model(tiny_model)
    image = _road_band_image()
    whole = predict(model.module, image)
    tiled = predict_tiled(model.module, image, tile_px=128, overlap_px=48, batch_size=3)
    assert tiled.shape == whole.shape == (2, 200, 264)
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)
    diff = np.abs(tiled - whole)
    assert diff.mean() < 0.05 and np.percentile(diff, 99) < 0.25


def _model(in_channels: int = 3) -> NNModel:
    torch.manual_seed(1)
    hyper = {"in_channels": in_channels, "num_classes": 2, "width": 4, "centerline_head": True}
    return NNModel(build_model("decouple", **hyper), "decouple", hyper, list(range(1, in_channels + 1)), [10.0] * in_channels, [2.0] * in_channels, train_gsd_m=0.3)


def test_model_file_round_trip(tmp_path: Path) -> None:
    model = _model()
    path = save_nn_model(tmp_path / "m.npz", model)
    back = load_nn_model(path)
    assert (back.architecture, back.hyper, back.bands, back.band_mean, back.heads) == (
        "decouple", model.hyper, [1, 2, 3], [10.0] * 3, ["background", "road", "centerline"],
    )  # fmt: skip
    x = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(predict(back.module, x), predict(model.module.eval(), x))


def test_mismatched_band_count_is_refused(tmp_path: Path) -> None:
    path = save_nn_model(tmp_path / "rgb.nn.npz", _model())
    model = load_nn_model(path)
    with pytest.raises(InputMismatchError, match=r"rgb\.nn\.npz.*band"):
        model.select_bands(np.zeros((1, 32, 32), np.uint8), "scene.tif", str(path))


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path: Path) -> None:
    from geoseg.modelfile import load_model, save_model

    arrays, meta = load_model(save_nn_model(tmp_path / "m.npz", _model()))
    meta["hyper"]["width"] = 8
    save_model(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(ModelFileError, match="bad.npz"):
        load_nn_model(tmp_path / "bad.npz")


class _Exploit:
    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path(_Exploit.target),))


def test_pickle_disguised_as_model_is_refused_unexecuted(tmp_path: Path) -> None:
    _Exploit.target = str(tmp_path / "pwned")
    as_npz = tmp_path / "evil.npz"
    np.savez(as_npz, payload=np.array([_Exploit()], dtype=object))
    raw = tmp_path / "evil_torch.npz"
    raw.write_bytes(pickle.dumps({"state_dict": _Exploit()}))
    for path in (as_npz, raw):
        with pytest.raises(ModelFileError, match=path.name):
            load_nn_model(path)
    assert not (tmp_path / "pwned").exists()
