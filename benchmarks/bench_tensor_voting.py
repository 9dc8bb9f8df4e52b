"""Throughput of steerable (FFT) tensor voting against the direct reference.

Run: ``python benchmarks/bench_tensor_voting.py [--no-4096]``. Prints Mpx/s (image pixels
per second of wall time, best of a few runs) of :func:`geoseg.road.tensor_voting.tensor_voting`
for σ = 5, 10, 20 px at 1024² and 4096², and of
:func:`geoseg.road.tensor_voting.tensor_voting_direct` at σ = 10 px on a smaller image of the
same road density (the direct cost grows with road area × σ², so its Mpx/s is comparable
across sizes at equal density), then the fast/direct ratio at σ = 10.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage.draw import line

from geoseg.road.tensor_voting import tensor_voting, tensor_voting_direct


def road_mask(size: int, seed: int = 0) -> np.ndarray:
    """Synthetic road mask: random straight roads 4 to 12 px wide, about 10 % of the area."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), dtype=bool)
    n_roads = max(2, size // 64)
    for _ in range(n_roads):
        r0, c0, r1, c1 = rng.integers(0, size, 4)
        half = int(rng.integers(2, 7))
        for off in range(-half, half + 1):
            rr, cc = line(r0, c0, r1, c1)
            vertical = abs(r1 - r0) > abs(c1 - c0)
            rr, cc = (rr, cc + off) if vertical else (rr + off, cc)
            keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
            mask[rr[keep], cc[keep]] = True
    return mask


def mpx_per_s(func, image: np.ndarray, repeat: int, **kwargs) -> float:
    """Best-of-``repeat`` throughput in megapixels per second."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        func(image, **kwargs)
        best = min(best, time.perf_counter() - start)
    return image.size / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-4096", action="store_true", help="skip the 4096² runs")
    parser.add_argument("--direct-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=-1, help="scipy.fft threads (-1: all)")
    args = parser.parse_args()

    sizes = [1024] if args.no_4096 else [1024, 4096]
    fast = {}
    for size in sizes:
        image = road_mask(size)
        print(f"fast  {size}² (road fraction {image.mean():.2f}):")
        for sigma in (5.0, 10.0, 20.0):
            rate = mpx_per_s(
                tensor_voting, image, 3 if size <= 1024 else 1, sigma_px=sigma, workers=args.workers
            )
            fast[size, sigma] = rate
            print(f"  sigma={sigma:4.0f} px  {rate:8.2f} Mpx/s")
        rates = [fast[size, s] for s in (5.0, 10.0, 20.0)]
        print(f"  max/min across sigma: {max(rates) / min(rates):.2f}")

    small = road_mask(args.direct_size, seed=1)
    direct = mpx_per_s(tensor_voting_direct, small, 1, sigma_px=10.0)
    fast_small = mpx_per_s(tensor_voting, small, 3, sigma_px=10.0, workers=args.workers)
    print(f"direct {args.direct_size}² (road fraction {small.mean():.2f}), sigma=10 px: {direct:.4f} Mpx/s")
    print(f"fast   {args.direct_size}², sigma=10 px: {fast_small:.2f} Mpx/s")
    print(f"speed-up fast/direct at sigma=10: {fast[1024, 10.0] / direct:.0f}x (fast at 1024²), "
          f"{fast_small / direct:.0f}x (same {args.direct_size}² image)")


if __name__ == "__main__":
    main()
