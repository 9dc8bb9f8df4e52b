"""Batch speed-up on a local Dask cluster: 8 scenes with 1 worker vs 2 workers.

Eight synthetic 1024 x 1024 road masks (``geoseg.synthetic.render_scene``, seeds 0-7, 0.3 m,
UTM 33N) go through the shipped ``mask_to_centerlines`` pipeline with
:func:`geoseg.pipeline.batch.run_batch` on a ``LocalCluster`` of 1 and then 2 single-threaded
worker processes. The wall time of each batch (cluster start-up excluded; workers warmed up
by importing geoseg) and the speed-up ratio are printed.

    python benchmarks/bench_batch_dask.py [--scenes 8] [--size 1024]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geoseg.pipeline.batch import run_batch
from geoseg.pipeline.distributed import dask_client
from geoseg.pipeline.pipeline import load_pipeline
from geoseg.synthetic import render_scene


def write_masks(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` synthetic road masks (0/255 GeoTIFFs) of ``size`` pixels."""
    paths = []
    for seed in range(n):
        scene = render_scene(size, size, gsd_m=0.3, seed=seed)
        path = folder / f"scene_{seed}.tif"
        profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8", "crs": CRS.from_epsg(32633)}
        with rasterio.open(path, "w", transform=Affine(0.3, 0, 500000.0, 0, -0.3, 5000000.0), **profile) as dst:
            dst.write(np.where(scene.road_mask, 255, 0).astype(np.uint8)[None])
        paths.append(path)
    return paths


def _warm_up() -> None:
    import geoseg.pipeline.scene  # noqa: F401 - imports what a scene task needs


def timed_batch(paths: list[Path], outdir: Path, workers: int) -> float:
    """Seconds to run the batch on a fresh local cluster of ``workers`` workers."""
    pipe = load_pipeline("mask_to_centerlines")
    with dask_client(workers=workers) as client:
        client.run(_warm_up)
        start = time.perf_counter()
        reports = run_batch(pipe, paths, outdir, client=client, overwrite=True)
        seconds = time.perf_counter() - start
    failed = [r.error for r in reports if r.status != "done"]
    if failed:
        raise SystemExit(f"scenes failed: {failed}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_masks(folder, args.scenes, args.size)
        one = timed_batch(paths, folder / "one", 1)
        two = timed_batch(paths, folder / "two", 2)
    print(f"{args.scenes} scenes of {args.size}x{args.size} px, mask_to_centerlines")
    print(f"1 worker : {one:6.2f} s ({one / args.scenes:.2f} s/scene)")
    print(f"2 workers: {two:6.2f} s ({two / args.scenes:.2f} s/scene)")
    print(f"speed-up : {one / two:.2f}x")


if __name__ == "__main__":
    main()
