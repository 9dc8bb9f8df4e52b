"""Centerline extraction on the Ottawa RoadNet tiles: thinning baseline vs. the full method.

Run ``python benchmarks/bench_centerlines_ottawa.py``. Data: ``shared/data/ottawa_roadnet``
beside the repository (skipped with a message when absent). Inputs: (1) the ground-truth road
surface masks, (2) the blue channel of the RoadNet model's soft predictions (thresholded at
0.5 where a binary mask is needed). Methods:

(a) baseline: :func:`geoseg.road.skeleton.skeletonize_mask` → graph → rasterize;
(b) full method (Cheng et al., arXiv 1508.06163, stages 2–3): the shipped pipeline
    ``pipelines/mask_to_centerlines.yaml`` (tensor voting of a centrality-weighted road map,
    non-maximum suppression, graph, fitting-based connection) run in memory; for the soft
    predictions the same steps vote on the probability → rasterize.

Scores: buffer completeness / correctness / quality against the 1-px ground-truth
centerlines with 3 px and 5 px (≈ 1 m) slack, tile by tile and averaged over tiles. All
parameters are tied to the road width measured on each input (no per-tile tuning).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from affine import Affine

import geoseg.steps as st
from geoseg import Pipeline
from geoseg.metrics import raster_buffer_scores
from geoseg.pipeline.pipeline import load_pipeline
from geoseg.raster import GeoInfo, Raster
from geoseg.road.network import graph_to_lines, rasterize_lines, skeleton_to_graph
from geoseg.road.skeleton import skeletonize_mask

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ottawa_roadnet"
TILES = [
    "1-0-12", "1-14-5", "1-15-3", "1-16-2", "1-17-11",
    "1-18-9", "1-2-10", "1-5-10", "1-6-7", "1-6-9", "demo",
]  # fmt: skip
GSD_M = 0.21
SLACKS_PX = (3, 5)

#: The shipped pipeline, for binary masks.
MASK_PIPELINE = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines" / "mask_to_centerlines.yaml")
#: The same steps voting on a soft road probability (band 1 scaled to [0, 1]).
SOFT_PIPELINE = Pipeline(
    [st.BandProbability(), st.TensorVoting(source="probability"), st.NonMaxSuppression(), st.RoadNetwork(), st.ConnectNetwork()]
)


def baseline(prob: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Skeletonization baseline: thin the thresholded mask, via the graph, to a raster."""
    G = skeleton_to_graph(skeletonize_mask(prob > 0.5))
    return rasterize_lines(graph_to_lines(G), prob.shape)


def full_method(prob: NDArray[np.float64]) -> NDArray[np.bool_]:
    """The shipped geoseg pipeline (tensor voting, NMS, connection), run in memory."""
    binary = bool(np.isin(prob, (0.0, 1.0)).all())
    image = np.round(prob * 255).astype(np.uint8)[None]
    geo = GeoInfo(prob.shape[1], prob.shape[0], None, Affine.identity(), (GSD_M, GSD_M), False)
    raster = Raster(image, geo, np.ones(prob.shape, bool), "tile")
    result = (MASK_PIPELINE if binary else SOFT_PIPELINE).run(raster)
    # The lines in the scene's CRS, which is its pixel space here (the run may work on pixel blocks).
    return rasterize_lines(list(result.lines.geometry), prob.shape)


def _load(path: Path) -> NDArray[np.uint8]:
    return np.asarray(Image.open(path))


def main() -> int:
    """Run the benchmark and print the tables; return the exit code."""
    if not DATA.is_dir():
        print(f"SKIP: data folder {DATA} not found (see shared/data/README.md).")
        return 0
    inputs = {
        "GT masks": ("masks", lambda a: (a > 127).astype(np.float64)),
        "predictions": ("predictions", lambda a: a[..., 2] / 255.0),
    }
    methods = {"skeleton": baseline, "method": full_method}
    summary = []
    for input_name, (folder, convert) in inputs.items():
        tiles = [t for t in TILES if (DATA / folder / f"{t}.png").exists()]
        print(f"\n== input: {input_name} ({len(tiles)} tiles, GSD {GSD_M} m) ==")
        header = f"{'tile':8s} {'method':9s}" + "".join(
            f" | comp{s} corr{s} qual{s}" for s in SLACKS_PX
        )
        print(header)
        scores: dict[str, list[list[float]]] = {m: [] for m in methods}
        for t in tiles:
            prob = convert(_load(DATA / folder / f"{t}.png"))
            truth = _load(DATA / "centerlines" / f"{t}.png") > 127
            for name, fn in methods.items():
                t0 = time.perf_counter()
                pred = fn(prob)
                dt = time.perf_counter() - t0
                row = []
                for s in SLACKS_PX:
                    b = raster_buffer_scores(pred, truth, s)
                    row += [b.completeness, b.correctness, b.quality]
                scores[name].append(row)
                print(f"{t:8s} {name:9s}" + "".join(
                    f" | {row[3 * i]:5.3f} {row[3 * i + 1]:5.3f} {row[3 * i + 2]:5.3f}"
                    for i in range(len(SLACKS_PX))
                ) + f"   ({dt:.2f} s)")  # fmt: skip
        for name in methods:
            mean = np.mean(scores[name], axis=0)
            print(f"{'MEAN':8s} {name:9s}" + "".join(
                f" | {mean[3 * i]:5.3f} {mean[3 * i + 1]:5.3f} {mean[3 * i + 2]:5.3f}"
                for i in range(len(SLACKS_PX))
            ))  # fmt: skip
            summary.append((input_name, name, mean[2], mean[5]))
    print("\n== summary: mean quality ==")
    print(f"{'input':12s} {'method':9s} {'q@3px':>6s} {'q@5px':>6s}")
    for input_name, name, q3, q5 in summary:
        print(f"{input_name:12s} {name:9s} {q3:6.3f} {q5:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
