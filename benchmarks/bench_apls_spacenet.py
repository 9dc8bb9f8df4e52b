"""APLS and buffer scores of real SpaceNet-3 (Las Vegas) road networks.

Standalone benchmark of :mod:`geoseg.metrics` on the developer data in ``shared/data``
(beside the repository; see ``shared/data/README.md``):

* ``img0``: the real SpaceNet-3 competition proposal ``proposals/sn3_sample_submission_albu.csv``
  (WKT line strings in pixel coordinates of img0) against the SpaceNet ground truth
  ``centerlines/AOI_2_Vegas_img0.geojson``;
* ``img99 … img999``: OpenStreetMap roads (``vector_only/osm``) as the proposal against the
  SpaceNet ground truth (``vector_only/spacenetroads``), the pairs the APLS authors use.

Everything is reprojected from EPSG:4326 to UTM 11N (EPSG:32611) before measuring. For each
pair the script prints APLS (both directions, 50 m control points, 4 m snapping), vector
buffer completeness / correctness / quality (2 m buffer), and two sanity checks of APLS: the
ground truth against itself (must be 1.0) and against itself minus its longest edge (must be
lower).

Run from anywhere: ``python3 benchmarks/bench_apls_spacenet.py``. Exits with a message (status
0) when the data folder is absent.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import geopandas as gpd
import networkx as nx
import pandas as pd
import rasterio
import shapely
from shapely.affinity import affine_transform

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "spacenet_vegas"
if str(REPO) not in sys.path:  # run as a script from a checkout, without installing geoseg
    sys.path.insert(0, str(REPO))

from geoseg.metrics import apls, vector_buffer_scores  # noqa: E402
from geoseg.road.network import lines_to_graph  # noqa: E402

METRIC_CRS = "EPSG:32611"
SNAP_TOL_M = 0.5  # joining of line ends when building graphs (lines_to_graph)
BUFFER_M = 2.0
CHIPS = ("img99", "img990", "img991", "img995", "img997", "img998", "img999")


def read_lines(path: Path) -> list[shapely.Geometry]:
    """2-D line geometries of a GeoJSON file, reprojected to the metric CRS."""
    frame = gpd.read_file(path)
    geoms = shapely.force_2d(frame.to_crs(METRIC_CRS).geometry.to_numpy())
    return [g for g in geoms if g is not None and not g.is_empty]


def read_pixel_proposal(csv_path: Path, image_path: Path, image_id: str) -> list[shapely.Geometry]:
    """SpaceNet-3 submission lines of one image: pixel (col, row) -> image CRS -> metric CRS."""
    table = pd.read_csv(csv_path)
    wkt = table.loc[table["ImageId"] == image_id, "WKT_Pix"]
    lines = [g for g in shapely.from_wkt(wkt.to_numpy()) if not g.is_empty]
    with rasterio.open(image_path) as src:
        transform, crs = src.transform, src.crs
    a, b, c, d, e, f = transform[:6]
    in_crs = [affine_transform(g, [a, b, d, e, c, f]) for g in lines]
    return list(gpd.GeoSeries(in_crs, crs=crs).to_crs(METRIC_CRS))


def without_longest_edge(graph: nx.MultiGraph) -> nx.MultiGraph:
    """Copy of ``graph`` with its longest edge removed."""
    u, v, k, _ = max(graph.edges(keys=True, data=True), key=lambda e: e[3]["geometry"].length)
    pruned = graph.copy()
    pruned.remove_edge(u, v, k)
    return pruned


def score_pair(name: str, truth_lines: list, prop_lines: list) -> dict[str, float | str]:
    """APLS, buffer scores and sanity checks of one ground-truth / proposal pair."""
    truth = lines_to_graph(truth_lines, snap_tol=SNAP_TOL_M)
    prop = lines_to_graph(prop_lines, snap_tol=SNAP_TOL_M)
    t0 = time.perf_counter()
    result = apls(truth, prop)
    seconds = time.perf_counter() - t0
    buf = vector_buffer_scores(prop_lines, truth_lines, BUFFER_M)
    return {
        "pair": name,
        "gt_km": sum(g.length for g in truth_lines) / 1000,
        "prop_km": sum(g.length for g in prop_lines) / 1000,
        "gt_nodes": truth.number_of_nodes(),
        "prop_nodes": prop.number_of_nodes(),
        "apls": result.apls,
        "gt->prop": result.apls_gt_onto_prop,
        "prop->gt": result.apls_prop_onto_gt,
        "pairs": f"{result.gt_pairs}/{result.prop_pairs}",
        "sec": seconds,
        "comp": buf.completeness,
        "corr": buf.correctness,
        "qual": buf.quality,
        "self": apls(truth, truth).apls,
        "gt-1edge": apls(truth, without_longest_edge(truth)).apls,
    }


def main() -> int:
    """Score all pairs and print a table; return the exit status."""
    if not DATA.is_dir():
        print(f"skipped: SpaceNet developer data not found at {DATA}")
        return 0
    rows = [
        score_pair(
            "img0 albu",
            read_lines(DATA / "centerlines" / "AOI_2_Vegas_img0.geojson"),
            read_pixel_proposal(
                DATA / "proposals" / "sn3_sample_submission_albu.csv",
                DATA / "images" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif",
                "AOI_2_Vegas_img0",
            ),
        )
    ]
    for chip in CHIPS:
        rows.append(
            score_pair(
                f"{chip} osm",
                read_lines(DATA / "vector_only" / "spacenetroads" / f"AOI_2_Vegas_{chip}.geojson"),
                read_lines(DATA / "vector_only" / "osm" / f"AOI_2_Vegas_{chip}.geojson"),
            )
        )
    table = pd.DataFrame(rows).set_index("pair")
    print(
        f"APLS (50 m control points, 4 m snap) and vector buffer scores ({BUFFER_M:g} m), "
        f"{METRIC_CRS}; 'self' = GT vs GT, 'gt-1edge' = GT vs GT without its longest edge"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).to_string())
    osm = table.drop(index="img0 albu")
    print(f"\nmean over the 7 OSM pairs: APLS {osm['apls'].mean():.3f}, "
          f"buffer quality {osm['qual'].mean():.3f}")
    ok = (table["self"] == 1.0).all() and (table["gt-1edge"] < 1.0).all()
    print("sanity checks:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
