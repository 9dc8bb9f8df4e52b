"""Map updating: how well the comparison finds what changed, on stale sample maps and on real OSM/SpaceNet pairs.

Run ``python benchmarks/bench_map_update.py [--images DIR]``. Prints three tables and draws
two overlays into ``docs/img`` (or ``--images``):

1. **Synthetic stale maps** (issue 25): each sample scene's truth with one road deleted and one
   fake road added, in EPSG:4326. The deleted road must come back as ``new``, the fake as
   ``missing``: precision and recall by length (within 7 m), (a) for the comparison itself
   (the truth network against the stale map, ``geoseg compare``) and (b) for the whole job,
   image to changes (pipeline ``update_map`` with the sample MJCR model; scene A is unseen by it).
2. **Real: OSM against SpaceNet truth** on the 7 Vegas chips of ``../shared`` without images
   (``spacenet_vegas/vector_only``): OSM as the map, SpaceNet's centerlines as the network,
   compared within the truth's bounding box: lengths of the classes, the mean offset of the
   matched roads, the links found.
3. **Scaling**: a street grid of about 10 000 edges against a map of it shifted 2 m with 5 % of
   its streets deleted: seconds for the comparison and the link search (what one large
   scene's stitched network costs).

The overlays: ``map_update_scene_b.png`` (the pipeline's changes over scene B) and
``map_update_spacenet_img991.png`` (one real chip on a dark canvas: no image is stored).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely
from shapely.geometry import LineString

import geoseg
from geoseg.map_update import compare_files
from geoseg.report.changes import read_changes, render_changes

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared" / "data" / "spacenet_vegas" / "vector_only"
CHIPS = ["img99", "img990", "img991", "img995", "img997", "img998", "img999"]
#: Deleted truth roads and fake roads of the stale maps (scene CRS): the same as in tests/pipeline/test_update_map.py.
STALE = {
    "scene_a": ([6], [LineString([(533100, 5289990), (533150, 5289960)])]),
    "scene_b": ([4], [LineString([(690020, 5334990), (690100, 5334950)])]),
}
TOLERANCE_M = 7.0


def stale_map(scene: str, path: Path) -> tuple[Path, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    truth = gpd.read_file(SAMPLE / f"{scene}_centerlines.geojson")
    deleted, fakes = STALE[scene]
    fake = gpd.GeoDataFrame({"width_m": [8.0] * len(fakes)}, geometry=fakes, crs=truth.crs)
    gpd.GeoDataFrame(pd.concat([truth.drop(index=deleted), fake], ignore_index=True), crs=truth.crs).to_crs(4326).to_file(path)
    return path, truth.loc[deleted], fake


def by_length(found: gpd.GeoDataFrame, target: gpd.GeoDataFrame) -> tuple[float, float]:
    lines = shapely.union_all(found.geometry.to_numpy()) if len(found) else shapely.LineString()
    goal = shapely.union_all(target.geometry.to_numpy())
    precision = shapely.intersection(lines, goal.buffer(TOLERANCE_M)).length / lines.length if lines.length else 0.0
    return precision, shapely.intersection(goal, lines.buffer(TOLERANCE_M)).length / goal.length


def synthetic(work: Path, images: Path) -> None:
    print("1. Synthetic stale maps: deleted road found as new, fake road as missing (precision / recall by length, 7 m)")
    print(f"{'scene':8s} {'how':28s} {'new P':>6s} {'new R':>6s} {'miss P':>6s} {'miss R':>6s} {'seconds':>8s}")
    for scene in STALE:
        road_map, deleted, fakes = stale_map(scene, work / f"{scene}_stale.geojson")
        t0 = time.perf_counter()
        summary = compare_files(SAMPLE / f"{scene}_centerlines.geojson", road_map, work / scene, image=SAMPLE / f"{scene}.tif", fmt="gpkg")
        seconds = time.perf_counter() - t0
        layers = {n: gpd.read_file(summary.outputs[0], layer=n) for n in ("new", "missing")}
        row = (*by_length(layers["new"], deleted), *by_length(layers["missing"], fakes))
        print(f"{scene:8s} {'truth vs stale map (compare)':28s} " + " ".join(f"{v:6.3f}" for v in row) + f" {seconds:8.2f}")
        pipe = geoseg.load_pipeline("update_map", {"model": str(SAMPLE / "roads.mjcr.npz"), "map": str(road_map)})
        t0 = time.perf_counter()
        result = pipe.run(SAMPLE / f"{scene}.tif")
        seconds = time.perf_counter() - t0
        changes = {n: result.features(n) for n in ("new", "missing", "matched", "links")}
        row = (*by_length(changes["new"], deleted), *by_length(changes["missing"], fakes))
        print(f"{scene:8s} {'image -> changes (update_map)':28s} " + " ".join(f"{v:6.3f}" for v in row) + f" {seconds:8.2f}")
        if scene == "scene_b":
            render_changes(SAMPLE / f"{scene}.tif", changes).save(images / "map_update_scene_b.png")


def spacenet(work: Path, images: Path) -> None:
    if not SHARED.is_dir():
        print(f"2. skipped: {SHARED} is absent")
        return
    print("\n2. OSM (map) against SpaceNet truth (network), Vegas chips without images; tolerance 7 m")
    print(f"{'chip':7s} {'truth km':>8s} {'OSM km':>7s} {'new km':>7s} {'miss km':>7s} {'match km':>8s} {'offset m':>8s} {'links new/broken':>16s} {'seconds':>8s}")
    sums = [0.0] * 5
    for chip in CHIPS:
        truth, osm = SHARED / "spacenetroads" / f"AOI_2_Vegas_{chip}.geojson", SHARED / "osm" / f"AOI_2_Vegas_{chip}.geojson"
        utm = gpd.read_file(truth).estimate_utm_crs()
        t0 = time.perf_counter()
        summary = compare_files(truth, osm, work / chip, fmt="gpkg")
        seconds = time.perf_counter() - t0
        t = summary.totals
        truth_km = gpd.read_file(truth).to_crs(utm).length.sum() / 1000
        osm_km = gpd.read_file(osm).to_crs(utm).length.sum() / 1000
        values = (truth_km, osm_km, t["new"]["length_m"] / 1000, t["missing"]["length_m"] / 1000, t["matched"]["length_m"] / 1000)
        sums = [a + b for a, b in zip(sums, values)]
        links = f"{int(t['links']['new_link'])}/{int(t['links']['broken_link'])}"
        print(f"{chip:7s} {values[0]:8.3f} {values[1]:7.3f} {values[2]:7.3f} {values[3]:7.3f} {values[4]:8.3f} {t['matched']['offset_m']:8.2f} {links:>16s} {seconds:8.2f}")
        if chip == "img991":
            layers = read_changes({n: (summary.outputs[0], n) for n in ("new", "missing", "matched", "links")})
            render_changes(None, layers, max_size=640).save(images / "map_update_spacenet_img991.png")
    print(f"{'all':7s} {sums[0]:8.3f} {sums[1]:7.3f} {sums[2]:7.3f} {sums[3]:7.3f} {sums[4]:8.3f}")


def scaling() -> None:
    import numpy as np
    from shapely import affinity

    from geoseg.road.map_changes import compare_lines, link_changes
    from geoseg.road.network import lines_to_graph

    print("\n3. Scaling: street grids (100 m blocks), map shifted 2 m with 5 % of its streets deleted, tolerance 7")
    for n in (30, 70):
        streets = [LineString([(i * 100.0, j * 100.0), (i * 100.0, (j + 1) * 100.0)]) for i in range(n + 1) for j in range(n)]
        streets += [LineString([(j * 100.0, i * 100.0), ((j + 1) * 100.0, i * 100.0)]) for i in range(n + 1) for j in range(n)]
        keep = np.random.default_rng(0).random(len(streets)) > 0.05
        road_map = [affinity.translate(s, 2, 1) for s, k in zip(streets, keep) if k]
        network = lines_to_graph(streets)
        edges = [d["geometry"] for *_, d in network.edges(keys=True, data=True)]
        t0 = time.perf_counter()
        result = compare_lines(edges, road_map, tolerance_px=7)
        t1 = time.perf_counter()
        links = link_changes(network, road_map, tolerance_px=7, radius_px=250, new_edges=set(result.new.source.tolist()))
        t2 = time.perf_counter()
        print(f"{len(edges):6d} edges vs {len(road_map):6d} map lines: compare {t1 - t0:6.1f} s, links {t2 - t1:5.1f} s ({len(links)} links)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "img", help="folder for the overlays")
    args = parser.parse_args()
    args.images.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        synthetic(Path(tmp), args.images)
        spacenet(Path(tmp), args.images)
    scaling()
    print(f"\noverlays in {args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
