"""ONNX export and the onnxruntime backend: equal probabilities, Deepness metadata, clear errors (issue 24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import geoseg
from geoseg.errors import ConfigError, ModelFileError
from geoseg.nn.inference import predict_scene
from geoseg.nn.modelfile import NNModel, load_nn_model
from geoseg.nn.models import build_model

pytest.importorskip("onnxruntime", reason="the ONNX backend needs the extra geoseg[onnx]")
pytest.importorskip("onnx", reason="ONNX export needs the extra geoseg[onnx]")

from geoseg.nn.onnx import export_onnx  # noqa: E402
from geoseg.nn.onnx_runtime import load_onnx_model  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def _model(arch: str) -> NNModel:
    torch.manual_seed(0)
    if arch == "gas":
        genotype = [["sep_conv_3x3", "zero", "conv_3x3"], ["skip_connect", "dil_conv_3x3", "zero"], ["zero"] * 3]
        hyper = {"in_channels": 3, "num_classes": 2, "width": 8, "strides": [4, 8, 16], "nodes": 2, "genotype": genotype, "centerline_head": True}
    else:
        hyper = {"in_channels": 3, "num_classes": 2, "width": 8, **({"centerline_head": True} if arch == "decouple" else {})}
    module = build_model(arch, **hyper).eval()
    return NNModel(module, arch, hyper, [1, 2, 3], [90.0, 100.0, 80.0], [30.0, 25.0, 20.0], train_gsd_m=0.3, tile_px=128, overlap_px=32)


@pytest.mark.parametrize("arch", ["baseline", "decouple", "gas"])
def test_exported_models_give_the_same_probabilities(tmp_path: Path, arch: str) -> None:
    model = _model(arch)
    path = export_onnx(model, tmp_path / f"{arch}.onnx")
    loaded = load_onnx_model(path, threads=1)
    assert loaded.heads == model.heads and loaded.bands == model.bands and loaded.band_mean == model.band_mean
    image = np.random.default_rng(1).normal(size=(3, 300, 260)).astype(np.float32)  # tiled, blended: 128 px tiles, 32 px overlap
    expected = predict_scene(model, image)
    got = predict_scene(loaded, image)
    assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4
    tta = predict_scene(loaded, image[:, :128, :128], tta=True) - predict_scene(model, image[:, :128, :128], tta=True)
    assert np.abs(tta).max() < 1e-4


@pytest.fixture(scope="module")
def quantized(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """GDRQ W8A8 and W4A4 files of the tiny model, and (key 0) a mixed-precision one as BP-NAS writes: calibrated, not fine-tuned."""
    from geoseg.nn.quant.gdrq import layer_plan, load_quant_config, quantize_finetune, uniform_bits
    from geoseg.nn.quant.qat import LayerBits
    from geoseg.nn.quant.qmodelfile import save_quantized
    from tests.nn.conftest import scene_b

    folder = tmp_path_factory.mktemp("q")
    model = load_nn_model(tiny_model)
    cfg = load_quant_config(None, ["threads=1", "iterations=0", "batch_size=2", "crop_px=64", "calibration_batches=1"])
    macs, ends = layer_plan(model, 256)
    plans = {b: uniform_bits(macs, ends, b, b, 8) for b in (8, 4)}
    plans[0] = {name: bits if name in ends else LayerBits(*[(8, 4), (4, 8), (2, 2), (8, 8)][i % 4]) for i, (name, bits) in enumerate(plans[8].items())}
    return {b: save_quantized(folder / f"w{b}.npz", quantize_finetune(model, [scene_b()], plan, cfg, macs=macs, progress=False)) for b, plan in plans.items()}


def _stored_bytes(graph: Any) -> dict[str, int]:
    """Bytes of the graph's stored tensors (initializers and constants) by element type."""
    from onnx import numpy_helper

    tensors = [numpy_helper.to_array(t) for t in graph.graph.initializer]
    tensors += [numpy_helper.to_array(n.attribute[0].t) for n in graph.graph.node if n.op_type == "Constant" and n.attribute]
    out: dict[str, int] = {}
    for t in tensors:
        out[t.dtype.name] = out.get(t.dtype.name, 0) + t.nbytes
    return out


@pytest.mark.parametrize("bits", [8, 4, 0], ids=["W8A8", "W4A4", "mixed"])
def test_quantized_models_export_as_integer_graphs_that_agree_with_torch(tmp_path: Path, tiny_model: Path, quantized: dict[int, Path], bits: int) -> None:
    import onnx

    from geoseg.raster import read_raster

    model = load_nn_model(quantized[bits])
    path = export_onnx(model, tmp_path / f"w{bits}.onnx")
    graph = onnx.load(path)
    stored = _stored_bytes(graph)
    float_stored = _stored_bytes(onnx.load(export_onnx(load_nn_model(tiny_model), tmp_path / "float.onnx")))
    assert stored["int8"] > 0.9 * float_stored["float32"] / 4  # the weights are 8-bit codes (4-bit ones too: ONNX has no 4-bit type below opset 21)
    assert stored["float32"] < 0.1 * float_stored["float32"]  # only scales and the float layers' parameters stay float
    assert path.stat().st_size < 0.4 * (tmp_path / "float.onnx").stat().st_size  # the graph's structure weighs on a tiny model; 0.28x in the benchmark
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("QuantizeLinear") >= ops.count("Conv") - 1  # every convolution's input is quantized, but where it is shared
    loaded = load_onnx_model(path, threads=1)
    assert loaded.heads == model.heads and loaded.train_gsd_m == model.train_gsd_m
    image = read_raster(SAMPLE / "scene_b.tif").array.astype(np.float32)
    simulated, exported = predict_scene(model, image), predict_scene(loaded, image)
    # float round-off flips codes at rounding ties, and a tie in a uniform area flips a whole
    # region (mean 3e-5 measured at W8A8, 2.2e-4 on the mixed model with its 2- and 4-bit steps)
    assert np.abs(exported - simulated).mean() < 5e-4
    roads_sim, roads_onnx = simulated > 0.5, exported > 0.5
    assert (roads_sim & roads_onnx).sum() / (roads_sim | roads_onnx).sum() > 0.999


def test_auto_runs_quantized_models_as_int8_in_onnxruntime(quantized: dict[int, Path]) -> None:
    from geoseg.nn.onnx_runtime import OnnxModule
    from geoseg.steps.deep import load_nn_classifier

    assert isinstance(load_nn_classifier(str(quantized[8]), "auto", threads=1).module, OnnxModule)
    assert not isinstance(load_nn_classifier(str(quantized[8]), "torch", threads=1).module, OnnxModule)


def test_the_file_carries_deepness_metadata(tmp_path: Path) -> None:
    import onnx

    graph = onnx.load(export_onnx(_model("decouple"), tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["model_type"] == "Segmentor"
    assert json.loads(meta["class_names"]) == {"0": "background", "1": "road"}
    assert float(meta["resolution"]) == pytest.approx(30.0)  # cm per pixel
    assert meta["tiles_size"] == "128" and meta["tiles_overlap"] == "25"  # percent
    assert json.loads(meta["standardization_mean"]) == pytest.approx([90 / 255, 100 / 255, 80 / 255])
    assert [o.name for o in graph.graph.output] == ["probabilities", "centerline"]
    shapes = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.graph.output]
    assert shapes == [["batch", 2, "height", "width"], ["batch", 1, "height", "width"]]  # Deepness reads the class count there


def test_nn_classify_runs_an_onnx_file_or_a_model_through_onnxruntime(tmp_path: Path, tiny_model: Path) -> None:
    import geoseg

    onnx_path = export_onnx(load_nn_model(tiny_model), tmp_path / "tiny.onnx")

    def probability(model: Path, backend: str) -> np.ndarray:
        pipe = geoseg.Pipeline([{"type": "nn_classify", "model": str(model), "backend": backend, "threads": 1}], outputs=["probability"])
        return pipe.run(SAMPLE / "scene_b.tif").layers["probability"]

    torch_probs = probability(tiny_model, "torch")
    assert np.abs(probability(onnx_path, "auto") - torch_probs).max() < 1e-4
    assert np.abs(probability(tiny_model, "onnx") - torch_probs).max() < 1e-4
    with pytest.raises(ConfigError, match=r"tiny\.onnx: an ONNX file runs with backend onnx or auto"):
        probability(onnx_path, "torch")


def test_model_export_command(tmp_path: Path, tiny_model: Path, quantized: dict[int, Path]) -> None:
    from click.testing import CliRunner

    from geoseg.cli.main import cli

    res = CliRunner().invoke(cli, ["model", "export", str(tiny_model), "-o", str(tmp_path / "out.onnx")])
    assert res.exit_code == 0, res.output
    assert load_onnx_model(tmp_path / "out.onnx").heads == load_nn_model(tiny_model).heads
    assert "Deepness" in res.output and "ONNX float32" in res.output
    res = CliRunner().invoke(cli, ["model", "export", str(quantized[8]), "-o", str(tmp_path / "int8.onnx")])
    assert res.exit_code == 0, res.output
    assert "ONNX int8" in res.output and load_onnx_model(tmp_path / "int8.onnx").heads == load_nn_model(quantized[8]).heads

    info = CliRunner().invoke(cli, ["model", "info", str(tmp_path / "int8.onnx")])
    assert info.exit_code == 0, info.output
    assert "int8 quantize/dequantize (33 of 33 convolutions on integer weights)" in info.output
    assert "output probabilities: batchx2xheightxwidth" in info.output and "model_type=Segmentor" in info.output
    summary = json.loads(CliRunner().invoke(cli, ["model", "info", str(tmp_path / "out.onnx"), "--json"]).output)
    assert summary["precision"] == "float32" and summary["integer_convolutions"] == 0 and summary["geoseg"]["bands"] == [1, 2, 3]
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    broken = CliRunner().invoke(cli, ["model", "info", str(tmp_path / "broken.onnx")])
    assert broken.exit_code != 0 and "broken.onnx: not an ONNX graph" in broken.output
    other = CliRunner().invoke(cli, ["model", "export", str(tiny_model), "-o", str(tmp_path / "out.pt")])  # it wrote ONNX that nothing then read
    assert other.exit_code == 2 and "out.pt: an ONNX file is named .onnx" in other.output and not (tmp_path / "out.pt").exists()


def test_foreign_or_broken_onnx_files_are_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["image"], ["out"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), foreign)
    with pytest.raises(ModelFileError, match=r"foreign\.onnx: an ONNX file without geoseg's metadata"):
        load_onnx_model(foreign)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(ModelFileError, match=r"broken\.onnx: onnxruntime cannot load"):
        load_onnx_model(broken)


def test_without_onnxruntime_the_onnx_backend_names_the_extra(tmp_path: Path, tiny_model: Path) -> None:
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "import geoseg\n"
        f"pipe = geoseg.Pipeline([{{'type': 'nn_classify', 'model': {str(tiny_model)!r}, 'backend': 'onnx'}}], outputs=['probability'])\n"
        "try:\n"
        f"    pipe.run({str(SAMPLE / 'scene_b.tif')!r})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        f"print(pipe.with_overrides({{'nn_classify.backend': 'auto'}}).run({str(SAMPLE / 'scene_b.tif')!r}).layers['probability'].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300).stdout
    assert "ConfigError" in out and "pip install 'geoseg[onnx]'" in out
    assert "(512, 512)" in out  # auto falls back to torch


def test_a_model_files_conversion_is_cached_between_runs(tmp_path: Path, tiny_model: Path) -> None:
    """The second run of a model file in onnxruntime loads its graph from the cache: no export, no
    ``onnx`` package (0.66 s to import), and no torch (about 1 s); an unusable cache entry is
    converted again."""
    cache = tmp_path / "cache"
    code = (
        "import sys, numpy as np, geoseg\n"
        f"pipe = geoseg.Pipeline([{{'type': 'nn_classify', 'model': {str(tiny_model)!r}, 'backend': 'onnx', 'threads': 1}}], outputs=['probability'])\n"
        f"np.save(sys.argv[1], pipe.run({str(SAMPLE / 'scene_b.tif')!r}).layers['probability'])\n"
        "print('onnx' in sys.modules, 'torch' in sys.modules)\n"
    )

    def run(name: str) -> tuple[tuple[str, str], np.ndarray]:
        env = {**os.environ, "GEOSEG_CACHE_DIR": str(cache)}
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        onnx_loaded, torch_loaded = done.stdout.split()[-2:]
        return (onnx_loaded, torch_loaded), np.load(tmp_path / name)

    converted, first = run("first.npy")
    (entry,) = (cache / "onnx").iterdir()
    cached, second = run("second.npy")
    assert (converted, cached) == (("True", "True"), ("False", "False"))
    assert np.array_equal(first, second)
    entry.write_bytes(b"truncated")
    again, third = run("third.npy")
    assert again == ("True", "True") and np.array_equal(first, third) and entry.read_bytes() != b"truncated"


def test_an_onnx_file_runs_without_torch(tmp_path: Path, tiny_model: Path) -> None:
    """An exported graph runs through the step with numpy and onnxruntime alone, with the torch backend's output."""
    onnx_path = export_onnx(load_nn_model(tiny_model), tmp_path / "tiny.onnx")
    code = (
        "import sys, numpy as np, geoseg\n"
        f"pipe = geoseg.Pipeline([{{'type': 'nn_classify', 'model': {str(onnx_path)!r}, 'threads': 1, 'tta': True}}], outputs=['probability'])\n"
        f"np.save(sys.argv[1], pipe.run({str(SAMPLE / 'scene_b.tif')!r}).layers['probability'])\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "onnx.npy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "False"
    in_torch = geoseg.Pipeline([{"type": "nn_classify", "model": str(tiny_model), "backend": "torch", "threads": 1, "tta": True}], outputs=["probability"])
    expected = in_torch.run(str(SAMPLE / "scene_b.tif")).layers["probability"]
    assert np.abs(np.load(tmp_path / "onnx.npy") - expected).max() < 1e-4
