"""Speed of the road chain against plain thinning, measured in the same run (issue 18).

Run ``python benchmarks/bench_speed.py [--size 4096] [--repeats 3]``. Needs ``sknw`` (``pip
install sknw``; the anchor only) and ``../shared/data/ottawa_roadnet/masks`` (skipped with a
message when absent).

Figures, each beside its anchor and as a ratio (medians of ``--repeats`` runs):

1. **mask → network**: ``geoseg run mask_to_centerlines`` with CLI defaults on a mosaic of
   the real Ottawa road masks (each 512² mask mirrored into a 1024² block so that roads join
   across blocks; blocks cycle through the 11 masks), GeoTIFF at 0.21 m in EPSG:32618.
   Anchor: read the same file, scikit-image ``skeletonize`` + ``sknw`` graph, in this
   process with the JIT warm. Also the peak RSS of the geoseg run (goal ≤ 1 GB).
2. **start-up**: ``geoseg --help``, ``geoseg --version`` and the one-line error for a
   missing input, wall time and whether torch, geopandas, scipy or dask were imported.

The other goals of issue 18 (image → network, the deep chain, halo overhead, default
execution against ``--workers 1``, training throughput) are not measured here yet.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

MASKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ottawa_roadnet" / "masks"
GSD_M = 0.21
HEAVY = ("torch", "geopandas", "scipy", "dask")


def build_mosaic(size: int, path: Path) -> None:
    """The mosaic of mirrored Ottawa masks (0/255, deflate-compressed tiled GeoTIFF)."""
    blocks = []
    for tile in sorted(MASKS.glob("*.png")):
        mask = (np.asarray(Image.open(tile)) > 127).astype(np.uint8) * 255
        top = np.concatenate([mask, mask[:, ::-1]], axis=1)
        blocks.append(np.concatenate([top, top[::-1]], axis=0))
    n = size // 1024
    rows = [np.concatenate([blocks[(i * n + j) % len(blocks)] for j in range(n)], axis=1) for i in range(n)]
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs=CRS.from_epsg(32618),
                   transform=Affine(GSD_M, 0, 500000, 0, -GSD_M, 5030000), tiled=True, blockxsize=256, blockysize=256, compress="deflate")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.concatenate(rows, axis=0), 1)


def anchor(path: Path) -> tuple[float, int]:
    """Seconds to read the mask, skeletonize it and build the sknw graph; the graph's edge count."""
    import sknw
    from skimage.morphology import skeletonize

    t0 = time.perf_counter()
    with rasterio.open(path) as src:
        mask = src.read(1) > 0
    graph = sknw.build_sknw(skeletonize(mask))
    return time.perf_counter() - t0, graph.number_of_edges()


def geoseg_run(path: Path, outdir: Path, sets: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (GB) of ``geoseg run mask_to_centerlines`` with the CLI defaults and ``--set`` items."""
    extra = [a for item in sets for a in ("--set", item)]
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        f"r = subprocess.run(['geoseg', 'run', 'mask_to_centerlines', {str(path)!r}, '-o', {str(outdir)!r}, '-q', '--overwrite', *{extra!r}]); "
        "dt = time.perf_counter() - t; "
        "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[2] != "0":
        raise SystemExit(f"geoseg run failed on {path}")
    return float(out[0]), int(out[1]) / 1024**2


def startup(args: list[str]) -> tuple[float, list[str]]:
    """Wall time of ``geoseg ARGS`` and the heavy modules it imported."""
    probe = (
        "import sys; sys.argv = ['geoseg', *sys.argv[1:]]\n"
        "from geoseg.cli.main import cli\n"
        "try:\n    cli()\n"
        "except SystemExit:\n    pass\n"
        f"print('IMPORTED', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("IMPORTED")][-1]
    return dt, line.split()[1:]


def main() -> int:
    """Print each figure beside its anchor; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="mosaic side in pixels (a multiple of 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--native", action="store_true", help="also time the default run on the scene's own pixels (about 70 s at 4096²)")
    args = parser.parse_args()
    if not MASKS.is_dir():
        print(f"SKIP: {MASKS} not found (see shared/data/README.md)")
        return 0
    try:
        import sknw  # noqa: F401
    except ImportError:
        print("SKIP: the anchor needs sknw (pip install sknw)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / f"ottawa_mosaic_{args.size}.tif"
        build_mosaic(args.size, scene)
        anchor(scene)  # JIT warm-up
        variants = {"--set work_road_px=8": ["work_road_px=8"], **({"defaults (own pixels)": []} if args.native else {})}
        anchors: list[float] = []
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            seconds, edges = anchor(scene)
            anchors.append(seconds)
            for name, sets in variants.items():
                if sets or not runs[name]:  # the slow run on the own pixels once
                    runs[name].append(geoseg_run(scene, Path(tmp) / "out", sets))
        a = statistics.median(anchors)
        mpx = args.size**2 / 1e6
        print(f"== 1. mask -> network, {args.size}^2 Ottawa mask mosaic ({mpx:.1f} Mpx), median of {args.repeats} ==")
        print(f"anchor  skeletonize + sknw (in process, JIT warm): {a:6.2f} s  ({mpx / a:5.2f} Mpx/s, {edges} edges)")
        for name, measured in runs.items():
            g = statistics.median(s for s, _ in measured)
            peak = max(p for _, p in measured)
            print(f"geoseg  run mask_to_centerlines {name:22s} {g:6.2f} s  ({mpx / g:5.2f} Mpx/s), peak RSS {peak:.2f} GB, "
                  f"{g / a:.1f}x the anchor ({len(measured)} run(s); goal <= 2x, RSS <= 1 GB)")  # fmt: skip
    print("\n== 6. start-up (one run each) ==")
    for cmd in (["--help"], ["--version"], ["run", "mask_to_centerlines", "/nonexistent/scene.tif", "-o", "/tmp/x"]):
        seconds, heavy = startup(cmd)
        print(f"geoseg {' '.join(cmd):58s} {seconds:5.2f} s  heavy imports: {', '.join(heavy) or 'none'}")
    print(f"\n(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
