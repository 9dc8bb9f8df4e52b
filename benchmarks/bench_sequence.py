"""Benchmark of one-pass sequence object segmentation (issue 12, OVS-Net style).

Trains the sequence model (geoseg.sequence.train) on generated sequences, then scores it on
held-aside generated sequences (other seeds, other background images) against a simple
baseline: per-frame segmentation (same detector and mask head, box priors only) +
nearest-centroid linking. Also an ablation: the one-pass tracker without the mask prior
(box priors only, embeddings and Hungarian tracking kept).

Backgrounds: crops of the real images in ``../shared/data`` (Ottawa and DeepGlobe tiles for
training, the SpaceNet Vegas RGB chip held aside for testing) when that folder is present,
else the project's own synthetic scenes (different seeds for training and testing). The
output says which.

Metrics (geoseg.sequence.metrics): J mean (region IoU), F mean (boundary F, DAVIS tolerance),
ID switches (CLEAR-MOT), matched fraction, frames per second on CPU (one torch thread,
inference only, model loaded).

    nice -n 10 python3 benchmarks/bench_sequence.py [--quick] [--out benchmarks/results/bench_sequence.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geoseg.sequence.infer import InferenceParams, instance_maps, segment_sequence, segment_sequence_baseline  # noqa: E402
from geoseg.sequence.metrics import sequence_scores  # noqa: E402
from geoseg.sequence.modelfile import load_sequence_model, save_sequence_model  # noqa: E402
from geoseg.sequence.synthetic import make_sequence, synthetic_background  # noqa: E402
from geoseg.sequence.train import SequenceTrainConfig, background_crops, train_sequence_model  # noqa: E402

DATA = REPO.parent / "shared" / "data"
TRAIN_IMAGES = sorted((DATA / "ottawa_roadnet" / "images").glob("1-*.png")) + sorted((DATA / "deepglobe_unlabeled" / "images").glob("*.jpg"))
TEST_IMAGES = [DATA / "spacenet_vegas" / "images" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Smaller run (fewer iterations and test sequences).")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_sequence.json"))
    ap.add_argument("--model", default="/tmp/bench_sequence.ovs.npz", help="Where the trained model is written.")
    ap.add_argument("--skip-train", action="store_true", help="Score the model already at --model instead of training one.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    size = 128
    real = all(p.exists() for p in TEST_IMAGES) and len(TRAIN_IMAGES) >= 2
    cfg = SequenceTrainConfig(
        frame_size=size, n_frames=8, n_sequences=12 if args.quick else 32, objects_min=2, objects_max=5,
        iterations=150 if args.quick else 900, batch_size=4, max_queries=4,
        backgrounds=[str(p) for p in TRAIN_IMAGES] if real else [], seed=0,
    )
    print(f"backgrounds: {'real crops from ' + str(DATA) + ' (train: Ottawa + DeepGlobe, test: SpaceNet Vegas img0)' if real else 'synthetic scenes (../shared/data absent)'}", flush=True)
    t0 = time.perf_counter()
    if not args.skip_train:
        model = train_sequence_model(cfg, progress=True)
        save_sequence_model(args.model, model)
    train_s = time.perf_counter() - t0
    model = load_sequence_model(args.model)
    if args.skip_train:
        print(f"scoring the existing model {args.model} (trained with {model.training.get('config')})", flush=True)
        train_s = float(model.training.get("seconds", float("nan")))
    else:
        print(f"trained in {train_s:.0f} s ({cfg.iterations} iterations, {cfg.n_sequences} sequences of {cfg.n_frames} frames {size}x{size})", flush=True)

    n_test, n_frames = (3, 12) if args.quick else (8, 16)
    bgs = background_crops(TEST_IMAGES, size, n_test, seed=99) if real else [synthetic_background(size, size, seed=50_000 + k) for k in range(n_test)]
    tests = [make_sequence(bg, n_frames, n_objects=3 + k % 3, seed=10_000 + k, leave_and_return=1, crossing=k % 2 == 0) for k, bg in enumerate(bgs)]
    methods = {
        "one-pass (ours)": lambda fr: segment_sequence(model, fr),
        "one-pass, no mask prior": lambda fr: segment_sequence(model, fr, params=InferenceParams(use_prior=False)),
        "baseline: per-frame + nearest centroid": lambda fr: segment_sequence_baseline(model, fr),
    }
    rows = {}
    for name, fn in methods.items():
        scores, frames_done, seconds = [], 0, 0.0
        for s in tests:
            fr = list(s.frames)
            t = time.perf_counter()
            res = fn(fr)
            seconds += time.perf_counter() - t
            frames_done += len(fr)
            scores.append(sequence_scores(s.instances, instance_maps(res, s.instances.shape[1:])))
        rows[name] = {
            "J": float(np.mean([x["J"] for x in scores])),
            "F": float(np.mean([x["F"] for x in scores])),
            "id_switches": int(sum(x["id_switches"] for x in scores)),
            "matched": float(np.mean([x["matched"] for x in scores])),
            "fps": frames_done / seconds,
        }
        print(f"{name}: {rows[name]}", flush=True)
    n_obj = sum(len(s.objects) for s in tests)
    print(f"\n{n_test} held-aside sequences x {n_frames} frames ({size}x{size}), {n_obj} objects; CPU, 1 torch thread")
    print("| method | J mean | F mean | ID switches | matched | fps |\n|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['J']:.3f} | {r['F']:.3f} | {r['id_switches']} | {r['matched']:.3f} | {r['fps']:.1f} |")
    out = {"backgrounds": "real" if real else "synthetic", "train_seconds": train_s, "config": cfg.model_dump(),
           "test": {"sequences": n_test, "frames": n_frames, "size": size, "objects": n_obj}, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
