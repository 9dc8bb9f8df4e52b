"""Deep road classifiers on the Massachusetts Roads crops (1 m, labels rasterised from a road map).

Run ``python benchmarks/bench_massachusetts.py [--seeds 3] [--config road_decouple] [--set key=value ...]
[--arms config,lite0,lite0_pretrained,...]`` (arms: :data:`ARMS`, e.g. the encoder comparison
``--set epochs=10 --arms lite0,lite0_pretrained,baseline_lite0,baseline_lite0_pretrained``).
Data: ``shared/data/massachusetts_roads`` beside the repository (skipped with a message when
absent).

Protocol (issue 22): train on the 200 ``training_*`` crops, test on the 48 ``validation_*`` crops,
with a shipped training config (``pipelines/training/<config>.yaml``: its crops, epochs,
iterations and optimizer) and seeds 0..n-1, no validation-based epoch selection (the last
epoch is kept). The crops are 400² PNGs at 1.0 m without georeferencing (``data.gsd_m=1.0``).

Scores, mean ± std over seeds:

- road IoU of ``p(road) > 0.5`` against the masks, pooled over the test crops (every pixel
  counts once), and the mean of the per-crop IoUs over crops whose mask has road;
- centerline completeness / correctness / quality (2 px slack) of the shipped
  ``pipelines/deep_road_centerlines.yaml`` against the skeletons of the masks, pooled;
- training seconds.

The masks come from OpenStreetMap centerlines drawn at a fixed width: some visible roads are
missing, so part of what the masks call false positives are real roads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from affine import Affine  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.morphology import skeletonize  # noqa: E402

from geoseg.metrics import raster_buffer_scores  # noqa: E402
from geoseg.nn.config import load_train_config  # noqa: E402
from geoseg.nn.efficientnet import imagenet_lite0_state  # noqa: E402
from geoseg.nn.train import SceneData, train  # noqa: E402
from geoseg.pipeline.pipeline import load_pipeline  # noqa: E402
from geoseg.raster import GeoInfo, Raster  # noqa: E402
from geoseg.road.network import graph_to_lines, rasterize_lines  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "massachusetts_roads"
GSD_M = 1.0
SLACK_PX = 2


def _names(split: str) -> list[str]:
    return sorted(p.stem for p in (DATA / "images").glob(f"{split}_img-*.png"))


def _image(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / "images" / f"{name}.png").convert("RGB")).transpose(2, 0, 1)


def _mask(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / "masks" / f"{name}.png").convert("L")) > 127


def _raster(name: str) -> Raster:
    image = _image(name)
    geo = GeoInfo(image.shape[2], image.shape[1], None, Affine.identity(), (GSD_M, GSD_M), False)
    return Raster(image, geo, np.ones(image.shape[1:], bool), name)


def evaluate(model: Path, names: list[str]) -> dict[str, float]:
    """Road IoU and centerline scores of one model over the test crops."""
    pipe = load_pipeline(REPO / "pipelines" / "deep_road_centerlines.yaml", [f"model={model}"])
    tp = fp = fn = 0
    per_crop: list[float] = []
    lines_all, truth_all = [], []
    for name in names:
        result = pipe.run(_raster(name))
        truth = _mask(name)
        road = result.layers["probability"] > 0.5
        a, b, c = int((road & truth).sum()), int((road & ~truth).sum()), int((~road & truth).sum())
        tp, fp, fn = tp + a, fp + b, fn + c
        if truth.any():
            per_crop.append(a / (a + b + c))
        lines_all.append(rasterize_lines(graph_to_lines(result.graph), truth.shape))
        truth_all.append(skeletonize(truth))
    s = raster_buffer_scores(np.concatenate(lines_all), np.concatenate(truth_all), SLACK_PX)
    return {"iou": tp / (tp + fp + fn), "crop_iou": float(np.mean(per_crop)), "comp": s.completeness, "corr": s.correctness, "qual": s.quality}


#: Named override sets for ``--arms`` (issue 22 part 3: encoders, scratch against ImageNet weights).
ARMS: dict[str, list[str]] = {
    "config": [],
    "lite0": ["model.encoder=efficientnet_lite0"],
    "lite0_pretrained": ["model.encoder=efficientnet_lite0", "model.pretrained=true"],
    "baseline": ["model.architecture=baseline"],
    "baseline_lite0": ["model.architecture=baseline", "model.encoder=efficientnet_lite0"],
    "baseline_lite0_pretrained": ["model.architecture=baseline", "model.encoder=efficientnet_lite0", "model.pretrained=true"],
}
_KEYS = (("iou", "road IoU (pooled)"), ("crop_iou", "road IoU (per crop)"), ("qual", f"centerline quality @{SLACK_PX}px"),
         ("comp", "completeness"), ("corr", "correctness"), ("train_s", "training + test seconds"))  # fmt: skip


def run_arm(arm: str, args: argparse.Namespace, data: list[SceneData], test_names: list[str], folder: Path) -> list[dict[str, float]]:
    """Train and score one arm over the seeds; print one line per seed."""
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        overrides = [f"seed={seed}", f"data.gsd_m={GSD_M}", *args.overrides, *ARMS[arm]]
        cfg = load_train_config(REPO / "pipelines" / "training" / f"{args.config}.yaml", overrides)
        path = folder / f"{arm}_seed{seed}.npz"
        t0 = time.perf_counter()
        train(cfg, data, best_path=path, progress=False)
        scores = {**evaluate(path, test_names), "train_s": time.perf_counter() - t0}
        rows.append(scores)
        print(
            f"{arm} seed {seed}: road IoU {scores['iou']:.3f} (per crop {scores['crop_iou']:.3f}) | centerlines @{SLACK_PX}px comp {scores['comp']:.3f} "
            f"corr {scores['corr']:.3f} quality {scores['qual']:.3f} | {scores['train_s']:.0f} s",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1 (to add seeds to an earlier run)")
    parser.add_argument("--config", default="road_decouple", help="shipped training config (pipelines/training/NAME.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training config override, for every arm")
    parser.add_argument("--arms", default="config", help=f"comma-separated arms, each the config plus its overrides: {', '.join(ARMS)}")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the trained models in (<arm>_seed<N>.npz)")
    parser.add_argument("--crops", type=int, default=None, help="use only the first N crops of each split (a smoke run)")
    args = parser.parse_args(argv)
    arms = list(dict.fromkeys(a.strip() for a in args.arms.split(",") if a.strip()))
    if unknown := [a for a in arms if a not in ARMS]:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    for arm in arms:  # every arm's config and weights checked before hours of training
        cfg = load_train_config(REPO / "pipelines" / "training" / f"{args.config}.yaml", [*args.overrides, *ARMS[arm]])
        if cfg.model.pretrained:
            imagenet_lite0_state(3)
    if not DATA.is_dir():
        print(f"SKIP: data folder {DATA} not found (see shared/data/README.md).")
        return 0
    train_names, test_names = _names("training")[: args.crops], _names("validation")[: args.crops]
    print(f"Massachusetts Roads: train {len(train_names)} crops, test {len(test_names)} crops, config {args.config} {args.overrides}", flush=True)
    data = [SceneData(_image(n), _mask(n).astype(np.uint8), GSD_M, n) for n in train_names]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for arm in arms:
            results[arm] = run_arm(arm, args, data, test_names, folder)
    print(f"\n== {args.config} {args.overrides}, mean ± std over {args.seeds} seed(s), {len(test_names)} test crops ==")
    print(f"{'arm':28s} " + " | ".join(label for _, label in _KEYS))
    for arm, rows in results.items():
        cells = [f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}" for k, _ in _KEYS]
        print(f"{arm:28s} " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
