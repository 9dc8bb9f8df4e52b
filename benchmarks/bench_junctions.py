"""Junction quality of the extracted networks (issue 21): one node per real junction.

Run ``python benchmarks/bench_junctions.py``. For each case it prints the network's edges,
its shortest edge, junction precision / recall / F1 against the truth (one-to-one matching
within a radius of one road width, :func:`geoseg.metrics.junction_scores`), and the number of
edges shorter than the road width that do not end at a dead end (goal: 0).

Cases:

1. the sample scenes (``sample_data/``) through both shipped chains: ``road_centerlines``
   with the sample MJCR model on ``scene_*.tif``, ``mask_to_centerlines`` on
   ``scene_*_mask.tif``; the truth is ``scene_*_centerlines.geojson`` (radius: 8 m, the
   sample roads' typical width);
2. the Ottawa RoadNet tiles (``../shared/data/ottawa_roadnet``, 0.21 m; skipped when absent):
   ``mask_to_centerlines`` on the ground-truth road masks; the truth graph comes from the
   1-px centerline rasters (skeleton graph, junction clusters of a few pixels merged), the
   radius is the road width the pipeline measures on the tile;
3. with ``--deep-model MODEL`` (a model of the shipped ``road_decouple`` config trained on the
   6 Ottawa training tiles, e.g. kept by ``bench_deep_ottawa.py --arms decouple --seeds 1
   --keep DIR``): ``deep_road_centerlines`` on the images of the 5 Ottawa test tiles, same
   truth and radius.

To compare with another version of geoseg, run the script with that version on
``PYTHONPATH`` (e.g. a ``git worktree`` of an older commit).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely
from affine import Affine
from PIL import Image
from skimage.morphology import skeletonize

import geoseg
from geoseg.metrics import junction_scores
from geoseg.raster import GeoInfo, Raster
from geoseg.road.connect import merge_junctions
from geoseg.road.network import lines_to_graph, skeleton_to_graph
from geoseg.road.skeleton import estimate_road_width

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
OTTAWA = REPO.parent / "shared" / "data" / "ottawa_roadnet"
OTTAWA_GSD_M = 0.21
SAMPLE_RADIUS_M = 8.0


def _graph(lines: gpd.GeoSeries | list) -> nx.MultiGraph:
    parts = [g for g in shapely.get_parts(np.asarray(list(lines), dtype=object)) if g is not None and not g.is_empty]
    return lines_to_graph(parts, snap_tol=0.5)


def _short_inner_edges(graph: nx.MultiGraph, width: float) -> int:
    """Edges shorter than ``width`` whose both ends are junctions or bends (not dead ends)."""
    return sum(1 for u, v, d in graph.edges(data=True) if d["geometry"].length < width and min(graph.degree(u), graph.degree(v)) > 1)


def _row(name: str, truth: nx.MultiGraph, found: nx.MultiGraph, radius: float) -> tuple[int, int, int]:
    p, r, f1, nt, nf, matched = junction_scores(truth, found, radius_m=radius)
    lengths = [d["geometry"].length for *_, d in found.edges(data=True)] or [float("nan")]
    short = _short_inner_edges(found, radius)
    print(f"{name:38s} edges {found.number_of_edges():4d}  shortest {min(lengths):6.1f}  junctions truth {nt:3d} found {nf:3d} "
          f"matched {matched:3d}  P {p:.3f} R {r:.3f} F1 {f1:.3f}  short inner edges {short}")  # fmt: skip
    return nt, nf, matched


def sample_scenes() -> None:
    print(f"== sample scenes, radius {SAMPLE_RADIUS_M:g} m ==")
    for scene in ("scene_a", "scene_b"):
        truth = _graph(gpd.read_file(SAMPLE / f"{scene}_centerlines.geojson").geometry)
        for chain, name, settings in (
            ("road_centerlines", f"{scene}.tif", [f"model={SAMPLE / 'roads.mjcr.npz'}"]),
            ("mask_to_centerlines", f"{scene}_mask.tif", []),
        ):
            lines = geoseg.load_pipeline(chain, settings).run(SAMPLE / name).lines
            _row(f"{scene} {chain}", truth, _graph(lines.geometry), SAMPLE_RADIUS_M)


def _truth_of_centerline_raster(centerlines: np.ndarray, merge_px: float) -> nx.MultiGraph:
    """The graph of a 1-px centerline raster, in pixels, its junction clusters merged.

    Plain thinning only (the raster is already a centerline): geoseg's ``skeletonize_mask``
    cleans road masks and would erase it.
    """
    graph = skeleton_to_graph(skeletonize(centerlines))
    return merge_junctions(graph, merge_px) if graph.number_of_edges() else graph


def _binary_png(folder: str, stem: str) -> np.ndarray:
    array = np.asarray(Image.open(OTTAWA / folder / f"{stem}.png")) > 127
    return array[..., 0] if array.ndim == 3 else array


def ottawa(deep_model: Path | None) -> None:
    if not (OTTAWA / "masks").is_dir():
        print(f"== Ottawa: skipped, {OTTAWA} is absent ==")
        return
    print("== Ottawa RoadNet GT masks, mask_to_centerlines, radius: the tile's road width ==")
    pipeline = geoseg.load_pipeline("mask_to_centerlines")
    stems = sorted(path.stem for path in (OTTAWA / "masks").glob("*.png"))
    _ottawa_rows(pipeline, stems, _mask_bands, "all tiles")
    if deep_model is None:
        return
    print(f"== Ottawa test tiles, deep_road_centerlines with {deep_model}, radius: the tile's road width ==")
    deep = geoseg.load_pipeline("deep_road_centerlines", [f"model={deep_model}"])
    _ottawa_rows(deep, TEST_TILES, _image_bands, "5 test tiles")


def _mask_bands(mask: np.ndarray, stem: str) -> np.ndarray:
    """The road mask as a 0/255 band (input of ``mask_to_centerlines``)."""
    return (mask * 255).astype(np.uint8)[None]


def _image_bands(mask: np.ndarray, stem: str) -> np.ndarray:
    """The tile's RGB image as bands (input of ``deep_road_centerlines``)."""
    return np.asarray(Image.open(OTTAWA / "images" / f"{stem}.png"))[..., :3].transpose(2, 0, 1)


#: The held-out tiles of the deep benchmarks (benchmarks/ottawa.py).
TEST_TILES = ["1-2-10", "1-5-10", "1-6-7", "1-6-9", "demo"]


def _ottawa_rows(pipeline: geoseg.Pipeline, stems: list[str], bands: Callable[[np.ndarray, str], np.ndarray], label: str) -> None:
    """Junction rows of ``pipeline`` run on ``bands(mask, stem)`` of each tile, and their total."""
    totals = np.zeros(3, int)
    for stem in stems:
        mask = _binary_png("masks", stem)
        width_px = float(estimate_road_width(mask))
        truth = _truth_of_centerline_raster(_binary_png("centerlines", stem), 3.0)
        geo = GeoInfo(mask.shape[1], mask.shape[0], None, Affine.identity(), (OTTAWA_GSD_M, OTTAWA_GSD_M), False)
        found = pipeline.run(Raster(bands(mask, stem), geo, np.ones(mask.shape, bool), stem)).lines
        totals += _row(f"ottawa {stem}", truth, _graph(found.geometry), width_px)  # pixel space: radius in px
    nt, nf, matched = totals
    p, r = matched / max(nf, 1), matched / max(nt, 1)
    print(f"{'ottawa, ' + label:38s} junctions truth {nt} found {nf} matched {matched}: P {p:.3f} R {r:.3f} F1 {2 * p * r / max(p + r, 1e-12):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deep-model", type=Path, help="a road_decouple model trained on the 6 Ottawa training tiles (case 3)")
    args = parser.parse_args()
    print(f"geoseg from {Path(geoseg.__file__).parent}")
    sample_scenes()
    ottawa(args.deep_model)
    sys.exit(0)
