"""Inference backends on the CPU: torch float32, ONNX float32, torch W8A8 (simulated) and ONNX int8, 1 and 2 threads, same run (issue 24).

Run ``python benchmarks/bench_inference.py [--size 2048] [--repeats 3]``.

Without ``--model``, a DecoupleSegNet of the shipped ``road_decouple`` config (0.5 m working
GSD) is trained on sample scene B for 10 epochs (about five CPU-minutes: enough for roads, not a
good model), and ``geoseg quantize``'s GDRQ W8A8 (8-bit weights and activations, calibrated
without fine-tuning) makes its quantized child; ``--model`` and ``--quantized`` take your own files instead. Both
classify a generated ``size`` x ``size`` scene at 0.3 m through geoseg's tiled inference (512
px tiles, 64 px overlap, blending), once per backend and thread count, median of
``repeats`` runs. Printed: the ONNX files' sizes, then per backend seconds, Mpx/s, the ratio
to torch float32 at the same thread count, the largest probability difference to the torch
run of the same model (float or simulated W8A8), its mean, and the road IoU (probability > 0.5) against
the float model's output and against the scene's truth. Needs the extra ``geoseg[onnx]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"

#: About five CPU-minutes of road_decouple training on scene B (the shipped config, 10 of its 30 epochs).
TRAINING = ["threads=2", "epochs=10", "inference.tile_px=512", "inference.overlap_px=64", "inference.tta=false"]
#: GDRQ W8A8 (the ends at 8 bits too), post-training: calibrated, not fine-tuned. Fine-tuning such a
#: model on scene B lowered its IoU against a 1024² scene's truth (0.655 float: 0.649 calibrated, 0.549 after
#: 60 iterations, 0.504 after 150), so the benchmark keeps the calibrated model.
QUANTIZATION = ["threads=2", "iterations=0", "batch_size=4", "crop_px=160", "calibration_batches=4"]


def _models(args: argparse.Namespace, folder: Path) -> tuple[Path, Path]:
    """The float model file and its W8A8 child (trained and quantized here unless given)."""
    from geoseg.classifiers.training_data import mask_labels
    from geoseg.nn.config import load_train_config
    from geoseg.nn.modelfile import load_nn_model
    from geoseg.nn.quant.gdrq import layer_plan, load_quant_config, quantize_finetune, uniform_bits
    from geoseg.nn.quant.qmodelfile import save_quantized
    from geoseg.nn.train import SceneData, train
    from geoseg.raster import read_raster
    from geoseg.shipped import resolve_file

    scene = read_raster(SAMPLE / "scene_b.tif")
    data = [SceneData(scene.array, mask_labels(scene, SAMPLE / "scene_b_mask.tif"), scene.geo.gsd_m, scene.source)]
    float_path = Path(args.model) if args.model else folder / "float.nn.npz"
    if not args.model:
        t0 = time.perf_counter()
        train(load_train_config(resolve_file("road_decouple", "training"), TRAINING), data, best_path=float_path, progress=False)
        print(f"trained the float model on scene B: {time.perf_counter() - t0:.0f} s")
    if args.quantized:
        return float_path, Path(args.quantized)
    model = load_nn_model(float_path)
    macs, ends = layer_plan(model, 256)
    t0 = time.perf_counter()
    quantized = quantize_finetune(model, data, uniform_bits(macs, ends, 8, 8, 8), load_quant_config(None, QUANTIZATION), macs=macs, progress=False)
    print(f"GDRQ W8A8 calibration: {time.perf_counter() - t0:.0f} s")
    return float_path, save_quantized(folder / "w8a8.nn.npz", quantized)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="a float nn model file (default: trained here on scene B)")
    parser.add_argument("--quantized", help="its W8A8 model file of geoseg quantize (default: made here)")
    args = parser.parse_args()
    try:
        from geoseg.nn.onnx import onnx_graph_bytes
        from geoseg.nn.onnx_runtime import load_onnx_model
    except ImportError as exc:  # pragma: no cover
        print(f"skipped: {exc}")
        return 0
    from geoseg.nn.inference import predict_scene
    from geoseg.nn.modelfile import load_nn_model
    from geoseg.synthetic import render_scene

    with tempfile.TemporaryDirectory() as folder:
        float_path, quantized_path = _models(args, Path(folder))
        float_model, quantized_model = load_nn_model(float_path), load_nn_model(quantized_path)
        t0 = time.perf_counter()
        float_onnx = onnx_graph_bytes(float_model)
        seconds_float = time.perf_counter() - t0
        t0 = time.perf_counter()
        int8_onnx = onnx_graph_bytes(quantized_model)
        seconds_int8 = time.perf_counter() - t0
    print(f"ONNX files: float32 {len(float_onnx) / 1e6:.2f} MB ({seconds_float:.1f} s to convert), "
          f"int8 {len(int8_onnx) / 1e6:.2f} MB = {len(int8_onnx) / len(float_onnx):.3f}x ({seconds_int8:.1f} s)")  # fmt: skip
    scene = render_scene(args.size, args.size, gsd_m=0.3, seed=7)
    bands = [b - 1 for b in float_model.bands]
    mean = np.asarray(float_model.band_mean, np.float32)[:, None, None]
    std = np.asarray(float_model.band_std, np.float32)[:, None, None]
    image = (scene.image[bands].astype(np.float32) - mean) / std
    road = float_model.classes.index("road")
    zoom = 0.3 / float_model.train_gsd_m if np.isfinite(float_model.train_gsd_m) else 1.0
    print(f"{args.size}x{args.size} px scene at 0.3 m, {float_model.architecture} width {float_model.hyper.get('width')} at "
          f"{float_model.train_gsd_m:g} m, tiles 512/64, median of {args.repeats}; torch {torch.__version__}")  # fmt: skip
    print("|dp|: probability difference to torch float32 (for onnx int8: to the torch W8A8 simulation it should equal)")
    columns = ["seconds", "Mpx/s", "vs torch", "max |dp|", "mean |dp|", "IoU float", "IoU truth"]
    print(f"{'backend':16s} {'threads':>7s} " + " ".join(f"{c:>9s}" for c in columns))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        candidates = {
            "torch float32": float_model,
            "onnx float32": load_onnx_model("<float32>", threads=threads, data=float_onnx),
            "torch W8A8 sim": quantized_model,
            "onnx int8": load_onnx_model("<int8>", threads=threads, data=int8_onnx),
        }
        outputs: dict[str, np.ndarray] = {}
        base = float("nan")
        for name, candidate in candidates.items():
            times, probs = [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                probs = predict_scene(candidate, image, zoom, tile_px=512, overlap_px=64)
                times.append(time.perf_counter() - t0)
            assert probs is not None
            outputs[name] = probs
            seconds = statistics.median(times)
            base = seconds if name == "torch float32" else base
            reference = outputs["torch W8A8 sim" if "int8" in name else "torch float32"]
            diff = np.abs(probs - reference)
            mask = probs[road] > 0.5
            iou_float = _iou(mask, outputs["torch float32"][road] > 0.5)
            print(f"{name:16s} {threads:7d} {seconds:9.2f} {args.size**2 / seconds / 1e6:9.2f} {base / seconds:8.2f}x {diff.max():9.2e} {diff.mean():9.2e} "
                  f"{iou_float:9.4f} {_iou(mask, scene.road_mask):9.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
