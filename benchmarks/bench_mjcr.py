"""Benchmark of MJCR + graph cuts road segmentation against a random-forest baseline.

Run standalone: ``python benchmarks/bench_mjcr.py``. Needs the shared developer data in the
``shared/data`` folder beside the repository; without it the benchmark is skipped (exit 0).

1. Accuracy on ``ottawa_roadnet`` (0.21 m): train on the first 6 tiles (sorted names), test
   on the rest; road IoU, precision and recall (pooled over the test pixels, plus the mean
   per-tile IoU) for RF, RF + graph cut, MJCR and MJCR + graph cut on the same features.
2. Speed and memory of MJCR-classifying the 1300×1300 SpaceNet Vegas scene (first 3 bands),
   in a subprocess so that peak memory is the classification's own: seconds per megapixel
   (features, coding), tracemalloc peak and the process's maximum resident set size.

Results are printed and written to ``benchmarks/results/bench_mjcr.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geoseg.modelfile import load_model, save_model  # noqa: E402
from geoseg.road.features import feature_description, feature_groups, multiscale_features  # noqa: E402
from geoseg.road.graphcut import graph_cut  # noqa: E402
from geoseg.road.mjcr import MJCRModel  # noqa: E402

DATA = REPO.parent / "shared" / "data"
OTTAWA = DATA / "ottawa_roadnet"
VEGAS = DATA / "spacenet_vegas" / "images" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif"
GSD_M = 0.21
SCALES_M = (1.0, 2.5, 5.0)  # neighbourhoods: lane markings/cars, half a lane, a road's width
JOINT_WINDOW_M = 1.0
SMOOTHNESS = 1.0
N_TRAIN = 6
RF_SAMPLES_PER_TILE = 20_000


def _load_tile(name: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with Image.open(OTTAWA / "images" / f"{name}.png") as im:
        img = np.asarray(im.convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0
    with Image.open(OTTAWA / "masks" / f"{name}.png") as m:
        mask = np.asarray(m) > 127
    return img, mask


def _odd(px: float) -> int:
    return 2 * int(round(px / 2.0)) + 1


def _scores(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """tp, fp, fn counts."""
    return np.array([(pred & gt).sum(), (pred & ~gt).sum(), (~pred & gt).sum()], np.int64)


def _summary(counts: list[np.ndarray]) -> dict[str, float]:
    tp, fp, fn = np.sum(counts, axis=0)
    return {
        "iou": tp / (tp + fp + fn),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "mean_tile_iou": float(np.mean([c[0] / max(c.sum(), 1) for c in counts])),
    }


def accuracy() -> tuple[dict[str, dict[str, float]], MJCRModel, dict]:
    """Train on the first tiles, evaluate the four methods on the others."""
    from sklearn.ensemble import RandomForestClassifier

    tiles = sorted(p.stem for p in (OTTAWA / "images").glob("*.png"))
    train, test = tiles[:N_TRAIN], tiles[N_TRAIN:]
    scales_px = [s / GSD_M for s in SCALES_M]
    data = {t: _load_tile(t) for t in tiles}
    feats = {}
    for t in tiles:
        feats[t], names = multiscale_features(data[t][0], scales_px)
    spec = feature_description(3, scales_px) | {"scales_m": list(SCALES_M), "gsd_m": GSD_M}

    t0 = time.perf_counter()
    model = MJCRModel.fit(
        [feats[t] for t in train], [data[t][1] for t in train], groups=feature_groups(names),
        joint_window_px=_odd(JOINT_WINDOW_M / GSD_M), feature_names=names, feature_spec=spec,
    )
    fit_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    X, y = [], []
    for t in train:
        idx = rng.choice(data[t][1].size, RF_SAMPLES_PER_TILE, replace=False)
        X.append(feats[t].reshape(len(names), -1)[:, idx].T)
        y.append(data[t][1].ravel()[idx])
    t0 = time.perf_counter()
    rf = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, n_jobs=-1, random_state=0)
    rf.fit(np.concatenate(X), np.concatenate(y))
    rf_fit_s = time.perf_counter() - t0

    counts: dict[str, list[np.ndarray]] = {k: [] for k in ("RF", "RF + GC", "MJCR", "MJCR + GC")}
    for t in test:
        img, gt = data[t]
        p_rf = rf.predict_proba(feats[t].reshape(len(names), -1).T)[:, 1].reshape(gt.shape)
        p_cr = model.predict_proba(feats[t])
        for label, p in (("RF", p_rf), ("MJCR", p_cr)):
            counts[label].append(_scores(p > 0.5, gt))
            counts[f"{label} + GC"].append(_scores(graph_cut(p, img, smoothness=SMOOTHNESS), gt))
    results = {k: _summary(v) for k, v in counts.items()}
    info = {"train": train, "test": test, "mjcr_fit_s": fit_s, "rf_fit_s": rf_fit_s}
    return results, model, info


def profile_scene(model_path: str) -> dict[str, float]:
    """Classify the Vegas scene with a saved model; run in a fresh subprocess."""
    import rasterio

    with rasterio.open(VEGAS) as src:
        img = src.read([1, 2, 3]).astype(np.float32) / 255.0
    arrays, meta = load_model(model_path, kind="mjcr")
    model = MJCRModel.from_arrays(arrays, meta)
    scales_px = meta["feature_spec"]["scales_px"]
    mpix = img.shape[1] * img.shape[2] / 1e6
    t_feat, t_code = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        F, _ = multiscale_features(img, scales_px)
        t1 = time.perf_counter()
        p = model.predict_proba(F)
        t_code.append(time.perf_counter() - t1)
        t_feat.append(t1 - t0)
        del F
    tracemalloc.start()
    F, _ = multiscale_features(img, scales_px)
    p = model.predict_proba(F)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "megapixels": mpix,
        "features_s_per_mpix": min(t_feat) / mpix,
        "mjcr_s_per_mpix": min(t_code) / mpix,
        "tracemalloc_peak_mib": peak / 2**20,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "road_fraction_p_gt_0.5": float((p > 0.5).mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile-scene", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_scene:
        print(json.dumps(profile_scene(args.profile_scene)))
        return 0
    if not OTTAWA.is_dir() or not VEGAS.is_file():
        print(f"SKIPPED: shared developer data not found at {DATA}")
        return 0

    results, model, info = accuracy()
    print(f"ottawa_roadnet, GSD {GSD_M} m, scales {SCALES_M} m, train {info['train']}, test {info['test']}")
    print(f"fit time: MJCR {info['mjcr_fit_s']:.1f} s, RF {info['rf_fit_s']:.1f} s")
    print(f"{'method':<12}{'IoU':>8}{'precision':>11}{'recall':>9}{'tile IoU':>10}")
    for name, r in results.items():
        print(f"{name:<12}{r['iou']:8.3f}{r['precision']:11.3f}{r['recall']:9.3f}{r['mean_tile_iou']:10.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(Path(tmp) / "mjcr.npz", model.to_arrays(), model.metadata())
        proc = subprocess.run(
            [sys.executable, __file__, "--profile-scene", str(path)], capture_output=True, text=True, check=True
        )
    prof = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"Vegas img0 {prof['megapixels']:.2f} MP: features {prof['features_s_per_mpix']:.2f} s/MP, "
        f"MJCR coding {prof['mjcr_s_per_mpix']:.2f} s/MP, tracemalloc peak {prof['tracemalloc_peak_mib']:.0f} MiB, "
        f"process max RSS {prof['maxrss_mib']:.0f} MiB"
    )
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_mjcr.json").write_text(json.dumps({"accuracy": results, "info": info, "profile": prof}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
