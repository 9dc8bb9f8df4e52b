"""Scale: tiled processing of large generated scenes in bounded memory (issue: scale).

Run ``python benchmarks/bench_scale.py [--sizes 2048 5120 10240] [--pipeline road_centerlines]``.

For each size, a synthetic scene (``geoseg.synthetic.render_scene``; image and road mask) is
written to a temporary folder by a separate process, then each measurement runs in a fresh
process so that its peak RSS (``resource.getrusage``, children) is its own:

- I/O ceiling: rasterio reads the scene block by block and writes a same-size GeoTIFF;
- the full chain, tiled with ``max_memory`` (default 512MB): wall time, Mpx/s, peak RSS of
  the process (imports included);
- on the smallest size, untiled vs tiled: buffer quality of one network against the other
  at 1 px slack, and node/edge counts.

No shared data is needed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "sample_data" / "roads.mjcr.npz"


_PEAK = """
import resource as _r
print(json.dumps({**_RESULT, "peak_rss_mib": round(_r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def _child(code: str) -> dict:
    """Run ``code`` (which sets ``_RESULT``) in a fresh interpreter; return it with that process's peak RSS."""
    out = subprocess.run([sys.executable, "-c", code + _PEAK], capture_output=True, text=True, cwd=REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_scene(size: int, folder: Path) -> tuple[Path, Path]:
    code = f"""
import json, numpy as np, rasterio
from rasterio.transform import Affine
from geoseg.synthetic import render_scene
s = render_scene({size}, {size}, gsd_m=0.3, seed=7)
prof = dict(driver="GTiff", width={size}, height={size}, crs="EPSG:32633", transform=Affine(0.3, 0, 500000, 0, -0.3, 5000000), tiled=True, blockxsize=256, blockysize=256)
with rasterio.open("{folder}/scene.tif", "w", count=3, dtype="uint8", compress="deflate", **prof) as d: d.write(s.image)
with rasterio.open("{folder}/mask.tif", "w", count=1, dtype="uint8", compress="deflate", **prof) as d: d.write(s.road_mask[None].astype("uint8") * 255)
_RESULT = {{}}
"""
    _child(code)
    return folder / "scene.tif", folder / "mask.tif"


def io_ceiling(scene: Path, out: Path) -> dict:
    code = f"""
import json, time, rasterio
t = time.perf_counter()
with rasterio.open("{scene}") as src:
    prof = src.profile
    with rasterio.open("{out}", "w", **prof) as dst:
        for _, w in src.block_windows(1):
            dst.write(src.read(window=w), window=w)
    mpx = src.width * src.height / 1e6
_RESULT = {{"seconds": time.perf_counter() - t, "mpx": mpx}}
"""
    return _child(code)


def run_chain(pipeline: str, scene: Path, out: Path, sets: list[str]) -> dict:
    code = f"""
import json, time, warnings
warnings.simplefilter("ignore")
import geoseg
from geoseg.pipeline.scene import process_scene
pipe = geoseg.load_pipeline({pipeline!r}, {sets!r})
t = time.perf_counter()
done = process_scene(pipe, "{scene}", "{out}", stem="scene", fmt="gpkg")
_RESULT = {{"seconds": time.perf_counter() - t, "tiles": done.tiles}}
"""
    return _child(code)


def compare(pipeline: str, scene: Path, sets: list[str], tile_px: int) -> dict:
    code = f"""
import json, warnings
warnings.simplefilter("ignore")
import geoseg
from geoseg.metrics import raster_buffer_scores
from geoseg.road.network import graph_to_lines, rasterize_lines
res = {{}}
for name, extra in (("untiled", ["tile_px=100000"]), ("tiled", ["tile_px={tile_px}"])):
    r = geoseg.load_pipeline({pipeline!r}, {sets!r} + extra).run("{scene}")
    res[name] = (r, rasterize_lines(graph_to_lines(r.graph), (r.geo.height, r.geo.width)))
b = raster_buffer_scores(res["tiled"][1], res["untiled"][1], 1)
g = {{k: (v[0].graph.number_of_nodes(), v[0].graph.number_of_edges(), v[0].tiles) for k, v in res.items()}}
_RESULT = {{"quality_1px": b.quality, "completeness": b.completeness, "correctness": b.correctness, "graphs": g}}
"""
    return _child(code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 5120, 10240])
    parser.add_argument("--pipeline", default="road_centerlines")
    parser.add_argument("--max-memory", default="512MB")
    parser.add_argument("--compare-tile", type=int, default=512)
    args = parser.parse_args()
    sets = [f"max_memory={args.max_memory}"] + ([f"model={MODEL}"] if args.pipeline == "road_centerlines" else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / str(size)
            folder.mkdir()
            t0 = time.perf_counter()
            scene, mask = make_scene(size, folder)
            source = scene if args.pipeline == "road_centerlines" else mask
            io = io_ceiling(source, folder / "copy.tif")
            chain = run_chain(args.pipeline, source, folder / "out", sets)
            mpx = size * size / 1e6
            row = {
                "size": size,
                "mpx": round(mpx, 1),
                "tiles": chain["tiles"],
                "seconds": round(chain["seconds"], 1),
                "mpx_per_s": round(mpx / chain["seconds"], 3),
                "peak_rss_mib": chain["peak_rss_mib"],
                "io_mpx_per_s": round(mpx / io["seconds"], 1),
                "fraction_of_io": round((mpx / chain["seconds"]) / (mpx / io["seconds"]), 4),
            }
            rows.append(row)
            print(json.dumps(row), f"(scene made in {time.perf_counter() - t0 - chain['seconds'] - io['seconds']:.0f} s)", flush=True)
        small = Path(tmp) / str(args.sizes[0])
        source = small / ("scene.tif" if args.pipeline == "road_centerlines" else "mask.tif")
        cmp = compare(args.pipeline, source, sets, args.compare_tile)
    print(f"\n{args.pipeline}, max_memory={args.max_memory}")
    print(f"{'size':>6} {'Mpx':>6} {'tiles':>5} {'s':>8} {'Mpx/s':>7} {'peak RSS MiB':>12} {'I/O Mpx/s':>9} {'of I/O':>7}")
    for r in rows:
        print(f"{r['size']:>6} {r['mpx']:>6} {r['tiles']:>5} {r['seconds']:>8} {r['mpx_per_s']:>7} {r['peak_rss_mib']:>12} {r['io_mpx_per_s']:>9} {r['fraction_of_io']:>7}")
    if len(rows) > 1:
        print(f"peak RSS ratio largest/smallest: {rows[-1]['peak_rss_mib'] / rows[0]['peak_rss_mib']:.2f} (target <= 1.3, and < 1536 MiB)")
    print(f"untiled vs tiled ({args.compare_tile} px) on {args.sizes[0]}^2: quality at 1 px {cmp['quality_1px']:.4f} "
          f"(comp {cmp['completeness']:.4f}, corr {cmp['correctness']:.4f}); nodes/edges/tiles {cmp['graphs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
