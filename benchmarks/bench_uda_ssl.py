"""Learning from unlabelled scenes: DST-CBC self-training and the uncertainty-aware mean teacher.

Run ``python benchmarks/bench_uda_ssl.py [--seeds 3] [--part ssl|uda|both] [--ssl-set k=v] [--uda-set k=v]``.
Data: ``shared/data`` beside the repository (skipped with a message when absent).

SSL (``pipelines/training/road_ssl.yaml``), Ottawa RoadNet (0.21 m), test = the 5 tiles
``1-2-10 1-5-10 1-6-7 1-6-9 demo`` (never used for training, no validation-based selection):

- ``sup-2``: supervised on the 2 labelled tiles ``1-0-12 1-14-5``;
- ``dst-cbc``: the same 2 labelled + the other 4 training tiles as **unlabelled** images
  (their masks are passed only as check masks, for the pseudo-label IoU in the log);
- ``sup-6``: supervised on all 6 training tiles with labels (upper bound).

All three arms run the same number of iterations of the same batch size (the SSL config's
supervised round + its self-training rounds; the supervised arms train that many epochs).

UDA (``pipelines/training/road_uda.yaml``): source = the 6 labelled Ottawa training tiles;
target (unlabelled) = the 5 ``deepglobe_unlabeled`` tiles (0.5 m, resampled to 0.21 m as the
pipeline would) and the SpaceNet Vegas RGB chip ``img0`` (~0.27 m, georeferenced, resampled).
The only labelled target data with RGB bands is img0: its mask is **rasterised from the
SpaceNet centerline GeoJSON, buffered by 3.7 m × lane_number** (a buffered-centerline mask,
not a drawn road surface); it is used for the evaluation and the per-epoch log only, never in
a loss. img0 is also one of the unlabelled target images (transductive, as usual in UDA;
only its pixels, not its labels, are trained on). The PAN SpaceNet chip has a mask but one
band, so RGB models cannot read it. Arms, same budget and batches:

- ``source-only``: ``uda.consistency_weight=0`` (the exported EMA teacher of a purely
  supervised student: isolates the consistency loss from weight averaging);
- ``mean-teacher``: ``uda.uncertainty=false``;
- ``ua-mt``: uncertainty-aware (the shipped config: entropy threshold ramped to ln 2, so its
  effect is confined to the ramp-up);
- ``ua-mt-soft`` (only with ``--uda-arms``): ``uda.weighting=soft``, weight ``1 − H/ln 2`` all along.

Scores: mean ± std over seeds of road IoU (``p(road) > 0.5``, the ``nn_classify`` step with
``resample: true``) on img0 (target) and the mean over the 5 Ottawa test tiles (source), and
the threshold-free road average precision of ``p(road)`` on img0 (informative when a model
under-predicts road on the new domain so that its IoU at 0.5 is near 0).
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
import torch  # noqa: E402

from geoseg.metrics import binary_scores  # noqa: E402
from geoseg.nn.config import load_train_config  # noqa: E402
from geoseg.nn.train import SceneData, train  # noqa: E402
from geoseg.pipeline.pipeline import Pipeline  # noqa: E402
from geoseg.raster import Raster, read_raster  # noqa: E402
from geoseg.steps import NNClassify  # noqa: E402
from ottawa import TEST, TRAIN, png, raster, scene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
OTTAWA = SHARED / "ottawa_roadnet"
DEEPGLOBE = SHARED / "deepglobe_unlabeled" / "images"
VEGAS = SHARED / "spacenet_vegas"
IMG0 = VEGAS / "images" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
IMG0_LINES = VEGAS / "centerlines" / "AOI_2_Vegas_img0.geojson"
DEEPGLOBE_GSD_M = 0.5
LANE_WIDTH_M = 3.7
LABELLED = TRAIN[:2]
CONFIGS = REPO / "pipelines" / "training"
UDA_ARMS = ["source-only", "mean-teacher", "ua-mt"]


def img0_mask() -> np.ndarray:
    """img0's road mask: SpaceNet centerlines rasterised and buffered by 3.7 m × lane_number (metric, anisotropic pixels)."""
    import geopandas as gpd
    from rasterio.features import rasterize
    from scipy import ndimage

    raster = read_raster(IMG0)
    lines = gpd.read_file(IMG0_LINES).to_crs(raster.geo.crs)
    lat = np.deg2rad(float(lines.geometry.union_all().centroid.y))
    px_x, px_y = abs(raster.geo.transform.a), abs(raster.geo.transform.e)
    sampling = (px_y * 110_950.0, px_x * 111_320.0 * np.cos(lat))  # metres per pixel (row, col)
    mask = np.zeros(raster.shape, bool)
    for lanes in sorted(set(int(v) for v in lines["lane_number"].fillna(1))):
        sel = lines[lines["lane_number"].fillna(1).astype(int) == lanes]
        drawn = rasterize(((g, 1) for g in sel.geometry), out_shape=raster.shape, transform=raster.geo.transform, all_touched=True, dtype="uint8") > 0
        mask |= ndimage.distance_transform_edt(~drawn, sampling=sampling) <= LANE_WIDTH_M * max(lanes, 1)
    return mask


def _probability(model: Path, raster: Raster) -> np.ndarray:
    return Pipeline([NNClassify(model=str(model), resample=True, threads=1)], outputs=["probability"]).run(raster).layers["probability"]


def _iou(model: Path, raster: Raster, truth: np.ndarray) -> float:
    return float(binary_scores(_probability(model, raster) > 0.5, truth)["iou"])


def average_precision(prob: np.ndarray, truth: np.ndarray) -> float:
    """Threshold-free road average precision: Σ (R_k − R_{k−1}) · P_k over pixels sorted by ``prob``."""
    order = np.argsort(-prob.ravel(), kind="stable")
    hits = truth.ravel()[order].astype(np.float64)
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / max(hits.sum(), 1.0))


def ottawa_iou(model: Path) -> float:
    """Mean road IoU over the Ottawa test tiles."""
    return float(np.mean([_iou(model, raster(t), png("masks", t) > 127) for t in TEST]))


def _fmt(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def run_ssl(seeds: int, overrides: list[str], tmp: Path) -> dict[str, list[dict[str, float]]]:
    """The three SSL arms; returns per-arm lists of per-seed scores."""
    base = load_train_config(CONFIGS / "road_ssl.yaml", ["threads=1", *overrides])
    epochs = base.epochs + base.ssl.rounds * base.ssl.epochs_per_round
    labelled, unlabelled = [scene(t) for t in LABELLED], [scene(t) for t in TRAIN if t not in LABELLED]
    print(f"SSL: {len(LABELLED)} labelled {LABELLED}, {len(unlabelled)} unlabelled, test {TEST}; {epochs} x {base.iterations_per_epoch} iterations, batch {base.data.batch_size}", flush=True)
    results: dict[str, list[dict[str, float]]] = {"sup-2": [], "dst-cbc": [], "sup-6": []}
    for seed in range(seeds):
        for arm in results:
            if arm == "dst-cbc":
                cfg = load_train_config(CONFIGS / "road_ssl.yaml", ["threads=1", f"seed={seed}", *overrides])
                data, unl = labelled, unlabelled
            else:
                cfg = load_train_config(CONFIGS / "road_ssl.yaml", ["threads=1", f"seed={seed}", *overrides, "mode=supervised", f"epochs={epochs}"])
                data, unl = (labelled if arm == "sup-2" else [scene(t) for t in TRAIN]), []
            t0 = time.perf_counter()
            run = train(cfg, data, best_path=tmp / f"ssl_{arm}{seed}.npz", progress=False, unlabeled_data=unl)
            seconds = time.perf_counter() - t0
            scores = {"iou": ottawa_iou(tmp / f"ssl_{arm}{seed}.npz"), "train_s": seconds}
            pseudo = [h for h in run.history if "pseudo_coverage" in h]
            if pseudo:
                scores["pseudo"] = " ".join(f"r{h['pseudo_r']:.2f}:cov {h['pseudo_coverage']:.2f}/IoU {h['pseudo_iou']:.3f}" for h in pseudo)
            results[arm].append(scores)
            print(f"seed {seed} {arm:8s}: test road IoU {scores['iou']:.3f} ({seconds:.0f} s){'  pseudo ' + scores['pseudo'] if pseudo else ''}", flush=True)
    return results


def run_uda(seeds: int, overrides: list[str], tmp: Path, only: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    """The three UDA arms; returns per-arm lists of per-seed scores."""
    source = [scene(t) for t in TRAIN]
    mask0 = img0_mask()
    img0 = read_raster(IMG0)
    target = [SceneData(read_raster(p, assume_gsd_m=DEEPGLOBE_GSD_M).array, np.full((1024, 1024), 255, np.uint8), DEEPGLOBE_GSD_M, p.name) for p in sorted(DEEPGLOBE.glob("*.jpg"))]
    target.append(SceneData(img0.array, mask0.astype(np.uint8), img0.geo.gsd_m, IMG0.name))  # mask: log only
    base = load_train_config(CONFIGS / "road_uda.yaml", ["threads=1", *overrides])
    print(
        f"UDA: source {len(source)} Ottawa tiles, target {len(target)} unlabelled (5 DeepGlobe 0.5 m + img0 {img0.geo.gsd_m:.3f} m), "
        f"img0 mask road {mask0.mean():.3f}; {base.epochs} x {base.iterations_per_epoch} iterations, batch {base.data.batch_size}",
        flush=True,
    )
    arms = {"source-only": ["uda.consistency_weight=0"], "mean-teacher": ["uda.uncertainty=false"], "ua-mt": [], "ua-mt-soft": ["uda.weighting=soft"]}
    arms = {k: v for k, v in arms.items() if k in (only or UDA_ARMS)}
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    for seed in range(seeds):
        for arm, extra in arms.items():
            cfg = load_train_config(CONFIGS / "road_uda.yaml", ["threads=1", f"seed={seed}", *overrides, *extra])
            t0 = time.perf_counter()
            run = train(cfg, source, best_path=tmp / f"uda_{arm}{seed}.npz", progress=False, unlabeled_data=target)
            seconds = time.perf_counter() - t0
            path = tmp / f"uda_{arm}{seed}.npz"
            prob0 = _probability(path, img0)
            scores = {
                "target": float(binary_scores(prob0 > 0.5, mask0)["iou"]), "target_ap": average_precision(prob0, mask0),
                "source": ottawa_iou(path), "train_s": seconds, "coverage": run.history[-1]["coverage"],
            }  # fmt: skip
            results[arm].append(scores)
            print(
                f"seed {seed} {arm:12s}: img0 road IoU {scores['target']:.3f} AP {scores['target_ap']:.3f}, Ottawa test IoU {scores['source']:.3f}, "
                f"last-epoch teacher coverage {scores['coverage']:.2f} ({seconds:.0f} s)",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--part", choices=["ssl", "uda", "both"], default="both")
    parser.add_argument("--ssl-set", dest="ssl_set", action="append", default=[], help="override of road_ssl.yaml for every SSL arm")
    parser.add_argument("--uda-set", dest="uda_set", action="append", default=[], help="override of road_uda.yaml for every UDA arm")
    parser.add_argument("--uda-arms", default=",".join(UDA_ARMS), help="comma-separated UDA arms (also: ua-mt-soft, weighting: soft)")
    args = parser.parse_args(argv)
    if not (OTTAWA.is_dir() and DEEPGLOBE.is_dir() and IMG0.is_file()):
        print(f"SKIP: data folder {SHARED} (ottawa_roadnet, deepglobe_unlabeled, spacenet_vegas) not found (see shared/data/README.md).")
        return 0
    torch.set_num_threads(1)
    print(f"torch threads 1; seeds {args.seeds}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("ssl", "both"):
            ssl = run_ssl(args.seeds, args.ssl_set, Path(tmp))
            print(f"\n== SSL, Ottawa: road IoU on {len(TEST)} held-out tiles, mean ± std over {args.seeds} seed(s) ==")
            for arm, rows in ssl.items():
                print(f"{arm:9s} {_fmt([r['iou'] for r in rows]):>15s}   train {np.mean([r['train_s'] for r in rows]):.0f} s/run", flush=True)
        if args.part in ("uda", "both"):
            uda = run_uda(args.seeds, args.uda_set, Path(tmp), args.uda_arms.split(","))
            print(f"\n== UDA, Ottawa -> DeepGlobe + SpaceNet img0: road IoU, mean ± std over {args.seeds} seed(s) ==")
            print(f"{'arm':12s} {'img0 IoU':>15s} {'img0 AP':>15s} {'Ottawa test IoU':>15s}")
            for arm, rows in uda.items():
                cols = [_fmt([r[k] for r in rows]) for k in ("target", "target_ap", "source")]
                print(f"{arm:12s} " + " ".join(f"{c:>15s}" for c in cols) + f"   train {np.mean([r['train_s'] for r in rows]):.0f} s/run", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
