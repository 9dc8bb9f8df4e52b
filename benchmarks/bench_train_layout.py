"""Seconds per training step of the shipped ``road_decouple`` network in bf16, by memory layout.

``geoseg train nn`` lays out images and weights channels-last under ``precision: bf16``
(:meth:`geoseg.nn.fitting.TrainingRun.images`). This benchmark measures what that buys: one
AdamW step (forward and loss under bf16 autocast, backward, update) of the shipped
``road_decouple`` network (DecoupleSegNet, width 16) on a batch of 8 random 160² crops, with
the default (contiguous) layout and channels-last, in this process, alternating the two in
rounds of 5 steps so that the machine's drift hits both alike. It prints the median step of
each and their ratio; ``--contended`` runs it beside one other CPU-bound process.

Usage::

    python benchmarks/bench_train_layout.py
    python benchmarks/bench_train_layout.py --contended --rounds 12
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from geoseg.nn.models import build_model

BATCH, CROP_PX, WIDTH = 8, 160, 16  # the shipped road_decouple config's batch, crop and width


class Arm:
    """One layout: its own network and optimizer, stepped on the same batch."""

    def __init__(self, layout: torch.memory_format, image: torch.Tensor, labels: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.net = build_model("decouple", in_channels=3, num_classes=2, width=WIDTH).to(memory_format=layout).train()
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=1e-3)
        self.image, self.labels = image.to(memory_format=layout), labels

    def step(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(self.net(self.image)["seg"].float(), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds of 5 steps per layout (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores, as training)")
    parser.add_argument("--contended", action="store_true", help="run beside one other CPU-bound process")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    image, labels = torch.randn(BATCH, 3, CROP_PX, CROP_PX, generator=gen), torch.randint(0, 2, (BATCH, CROP_PX, CROP_PX), generator=gen)
    arms = {"contiguous": Arm(torch.contiguous_format, image, labels), "channels-last": Arm(torch.channels_last, image, labels)}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.contended else None
    try:
        for arm in arms.values():  # oneDNN picks and compiles its kernels on the first calls
            for _ in range(3):
                arm.step()
        times: dict[str, list[float]] = {name: [] for name in arms}
        for r in range(args.rounds):
            for name in list(arms)[:: 1 if r % 2 == 0 else -1]:
                t0 = time.perf_counter()
                for _ in range(5):
                    arms[name].step()
                times[name].append((time.perf_counter() - t0) / 5)
    finally:
        if busy is not None:
            busy.kill()
    condition = "beside one busy process" if args.contended else "quiet"
    print(f"road_decouple training step, bf16, batch {BATCH}x{CROP_PX}^2, {torch.get_num_threads()} threads, {condition}, median of {args.rounds} rounds of 5")
    for name, seconds in times.items():
        print(f"{name:14s} {statistics.median(seconds):6.3f} s/step   rounds: {' '.join(f'{s:.3f}' for s in seconds)}")
    ratio = statistics.median(times["channels-last"]) / statistics.median(times["contiguous"])
    print(f"channels-last / contiguous: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
