"""Inference backends on the CPU: torch float32 against ONNX float32 (onnxruntime), 1 and 2 threads, same run (issue 24).

Run ``python benchmarks/bench_inference.py [--size 2048] [--repeats 3]``. A DecoupleSegNet of
the shipped ``road_decouple`` config's size (untrained: speed does not depend on the weights)
classifies a generated scene of ``size`` x ``size`` pixels at 0.3 m through geoseg's tiled
inference (the model's 512 px tiles, 64 px overlap, blending), once per backend and thread
count, median of ``repeats`` runs. Printed: the time to convert the model to ONNX in memory
(what ``backend: onnx``/``auto`` pays once per process), then seconds, Mpx/s, the ratio to
torch at the same thread count, and the largest probability difference to torch's output.
Needs the extra ``geoseg[onnx]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        from geoseg.nn.onnx import load_onnx_model, onnx_graph_bytes
    except ImportError as exc:  # pragma: no cover
        print(f"skipped: {exc}")
        return 0
    from geoseg.nn.config import load_train_config
    from geoseg.nn.inference import predict_scene
    from geoseg.nn.modelfile import NNModel
    from geoseg.nn.models import build_model
    from geoseg.shipped import resolve_file
    from geoseg.synthetic import render_scene

    config = load_train_config(resolve_file("road_decouple", "training"))
    hyper = {"in_channels": 3, "num_classes": 2, "width": config.model.width, "centerline_head": config.model.centerline_head}
    torch.manual_seed(0)
    module = build_model("decouple", **hyper).eval()
    model = NNModel(module, "decouple", hyper, [1, 2, 3], [100.0] * 3, [40.0] * 3, train_gsd_m=0.3, tile_px=512, overlap_px=64)
    scene = render_scene(args.size, args.size, gsd_m=0.3, seed=7).image.astype(np.float32)
    image = (scene - 100.0) / 40.0
    t0 = time.perf_counter()
    data = onnx_graph_bytes(model)
    print(f"conversion to ONNX in memory: {time.perf_counter() - t0:.2f} s")
    print(f"{args.size}x{args.size} px scene, decouple width {config.model.width}, tiles 512/64, median of {args.repeats}; torch {torch.__version__}")
    print(f"{'backend':14s} {'threads':>7s} {'seconds':>8s} {'Mpx/s':>7s} {'vs torch':>8s} {'max |dp|':>9s}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        onnx_model = load_onnx_model("<memory>", threads=threads, data=data)
        reference = None
        base = None
        for name, candidate in (("torch float32", model), ("onnx float32", onnx_model)):
            times, probs = [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                probs = predict_scene(candidate, image)
                times.append(time.perf_counter() - t0)
            seconds = statistics.median(times)
            assert probs is not None
            if reference is None:
                reference, base = probs, seconds
            diff = float(np.abs(probs - reference).max())
            print(f"{name:14s} {threads:7d} {seconds:8.2f} {args.size**2 / seconds / 1e6:7.2f} {base / seconds:7.2f}x {diff:9.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
