"""Deep road classifiers on the Ottawa RoadNet tiles: baseline vs DecoupleSegNet, then centerlines.

Run ``python benchmarks/bench_deep_ottawa.py [--seeds 3] [--set key=value ...]``
(``--keep DIR`` keeps the models, ``--models DIR`` re-scores kept models without training,
``--first-seed``/``--arms`` split the runs over processes). Data:
``shared/data/ottawa_roadnet`` beside the repository (skipped with a message when absent).

Protocol: train on the first 6 tiles (sorted names), test on the other 5 (4 tiles with a
RoadNet prediction, plus ``demo``). Each arm uses its shipped training config
(``pipelines/training/road_baseline.yaml`` / ``road_decouple.yaml``, same crops, epochs,
iterations and optimizer: the same budget) with seeds 0..n-1 and no validation-based
epoch selection (the last epoch is kept, so the test tiles never influence training).

Scores, mean ± std over seeds of the per-seed mean over test tiles:

- road IoU of ``p(road) > 0.5`` and boundary F-score (2 px tolerance) against ``masks/``, and
  road IoU of the pipeline's road mask (graph cut, or p > 0.5 with smoothness 0);
- centerline completeness / correctness / quality (3 px slack) of the shipped
  ``pipelines/deep_road_centerlines.yaml`` (voting on the road probability) against
  ``centerlines/``, and for models with a centerline head (trained on the training tiles'
  ``centerlines/`` rasters) also of the same pipeline voting on that head; the reference is
  RoadNet's own centerline output (``predictions/`` red channel > 127) on the 4 tiles that
  have one;
- inference speed (Mpx/s of the ``nn_classify`` step) and training seconds per epoch, on
  this machine's CPU threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a busy machine with few cores, spinning
# threads slow torch down by orders of magnitude (set before torch loads its OpenMP runtime).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from geoseg.metrics import binary_scores, boundary_f_score, raster_buffer_scores  # noqa: E402
from geoseg.nn.config import load_train_config  # noqa: E402
from geoseg.nn.train import train  # noqa: E402
from geoseg.pipeline.pipeline import Pipeline, load_pipeline  # noqa: E402
from geoseg.road.network import graph_to_lines, rasterize_lines  # noqa: E402
from geoseg.steps import NNClassify  # noqa: E402
from geoseg.steps.deep import load_nn_classifier  # noqa: E402
from ottawa import DATA, TEST, TRAIN, png, raster, scene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "pipelines" / "training"
#: arm -> (shipped config, overrides); decouple_cl adds the auxiliary centerline head
ARMS = {
    "baseline": (CONFIGS / "road_baseline.yaml", []),
    "decouple": (CONFIGS / "road_decouple.yaml", []),
    "decouple_cl": (CONFIGS / "road_decouple.yaml", ["model.centerline_head=true"]),
}
SLACK_PX = 3
BOUNDARY_TOL_PX = 2


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def evaluate(model_path: Path) -> dict[str, float]:
    """Mask and centerline scores of one model over the test tiles (means), and its speed."""
    pipe = load_pipeline(REPO / "pipelines" / "deep_road_centerlines.yaml", [f"model={model_path}"])
    # models with a centerline head: also score the same pipeline voting on that head
    has_head = "centerline" in load_nn_classifier(str(model_path)).heads
    head_pipe = load_pipeline(REPO / "pipelines" / "deep_road_centerlines.yaml", [f"model={model_path}", "output=centerline", "vote_on=probability"]) if has_head else None
    classify = Pipeline([NNClassify(model=str(model_path))], outputs=["probability"])
    rows: dict[str, list[float]] = {k: [] for k in ("iou", "bf", "gc_iou", "comp", "corr", "qual", "qual_ref_tiles", "qual_head")}
    px, seconds = 0, 0.0
    for tile in TEST:
        t0 = time.perf_counter()
        prob = classify.run(raster(tile)).layers["probability"]
        seconds += time.perf_counter() - t0
        result = pipe.run(raster(tile))
        px += prob.size
        truth = png("masks", tile) > 127
        rows["iou"].append(binary_scores(prob > 0.5, truth)["iou"])
        rows["bf"].append(boundary_f_score(prob > 0.5, truth, BOUNDARY_TOL_PX))
        rows["gc_iou"].append(binary_scores(result.layers["mask"], truth)["iou"])
        lines = rasterize_lines(graph_to_lines(result.graph), prob.shape)
        s = raster_buffer_scores(lines, png("centerlines", tile) > 127, SLACK_PX)
        rows["comp"].append(s.completeness)
        rows["corr"].append(s.correctness)
        rows["qual"].append(s.quality)
        if (DATA / "predictions" / f"{tile}.png").exists():
            rows["qual_ref_tiles"].append(s.quality)
        if head_pipe is not None:
            head_lines = rasterize_lines(graph_to_lines(head_pipe.run(raster(tile)).graph), prob.shape)
            rows["qual_head"].append(raster_buffer_scores(head_lines, png("centerlines", tile) > 127, SLACK_PX).quality)
        else:
            rows["qual_head"].append(float("nan"))
    out = {k: float(np.mean(v)) for k, v in rows.items()}
    out["mpx_s"] = px / seconds / 1e6
    return out


def reference() -> dict[str, float]:
    """RoadNet's own centerlines (predictions/ red channel) on the test tiles that have them."""
    scores = [raster_buffer_scores(png("predictions", t)[..., 0] > 127, png("centerlines", t) > 127, SLACK_PX) for t in TEST if (DATA / "predictions" / f"{t}.png").exists()]
    return {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("completeness", "correctness", "quality")}


def _print_seed(seed: int, arm: str, scores: dict[str, float]) -> None:
    print(
        f"seed {seed} {arm:8s}: IoU {scores['iou']:.3f} BF {scores['bf']:.3f} road mask IoU {scores['gc_iou']:.3f} | centerlines comp {scores['comp']:.3f} "
        f"corr {scores['corr']:.3f} qual {scores['qual']:.3f} (voting on the centerline head: {scores['qual_head']:.3f}) | "
        f"{scores['epoch_s']:.1f} s/epoch, {scores['train_s']:.0f} s training, {scores['mpx_s']:.2f} Mpx/s",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (to spread seeds over processes with --keep)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="models to run (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training config override for both arms")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the trained models in (ARM<seed>.npz)")
    parser.add_argument("--models", type=Path, default=None, help="evaluate the models kept in this folder by --keep instead of training")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"SKIP: data folder {DATA} not found (see shared/data/README.md).")
        return 0
    print(f"Ottawa RoadNet: train {len(TRAIN)} tiles, test {len(TEST)} tiles; torch threads {torch.get_num_threads()}")
    train_data = [scene(t, centerlines=True) for t in TRAIN]
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in args.arms}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.models or args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for arm in args.arms:
                cfg_path, arm_overrides = ARMS[arm]
                path = folder / f"{arm}{seed}.npz"
                if args.models is not None:
                    scores = evaluate(path)
                    history = load_nn_classifier(str(path)).training.get("history", [])
                    scores["epoch_s"] = float(np.mean([h["seconds"] for h in history]))
                    scores["train_s"] = float(np.sum([h["seconds"] for h in history]))
                    results[arm].append(scores)
                    _print_seed(seed, arm, scores)
                    continue
                # the scenes carry their centerline rasters; the config names them only for its check
                lines = f"data.centerlines={DATA / 'centerlines' / '*.png'}"
                cfg = load_train_config(cfg_path, [f"seed={seed}", lines, *arm_overrides, *args.overrides])
                t0 = time.perf_counter()
                run = train(cfg, train_data, best_path=path, progress=False)
                total = time.perf_counter() - t0
                scores = evaluate(path)
                scores["epoch_s"] = float(np.mean([h["seconds"] for h in run.history]))
                scores["train_s"] = total
                results[arm].append(scores)
                _print_seed(seed, arm, scores)
    print(f"\n== mean ± std over {args.seeds} seed(s), {len(TEST)} test tiles ==")
    print(f"{'model':9s} {'road IoU':>14s} {'boundary F':>14s} {'comp@3px':>14s} {'corr@3px':>14s} {'quality@3px':>14s} {'s/epoch':>8s} {'Mpx/s':>7s}")
    for arm, rows in results.items():
        cols = [_mean_std([r[k] for r in rows]) for k in ("iou", "bf", "comp", "corr", "qual")]
        print(f"{arm:9s} " + " ".join(f"{c:>14s}" for c in cols) + f" {np.mean([r['epoch_s'] for r in rows]):8.1f} {np.mean([r['mpx_s'] for r in rows]):7.2f}")
    ref = reference()
    print(f"RoadNet predictions (reference, 4 tiles): comp {ref['completeness']:.3f} corr {ref['correctness']:.3f} qual {ref['quality']:.3f}")
    for arm, rows in results.items():
        print(f"{arm} road IoU of the pipeline's road mask: {_mean_std([r['gc_iou'] for r in rows])}")
    for arm, rows in results.items():
        q = [r["qual_ref_tiles"] for r in rows]
        print(f"{arm} deep pipeline on the same 4 tiles: quality {_mean_std(q)} ({np.mean(q) - ref['quality']:+.3f} vs RoadNet)")
    for arm, rows in results.items():
        if not np.isnan(rows[0]["qual_head"]):
            print(f"{arm} voting on the centerline head instead (output=centerline): quality {_mean_std([r['qual_head'] for r in rows])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
