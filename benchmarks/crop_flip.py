"""Speed of the batch pad-4 crop + flip (``deepres.data.random_crop_flip``), which was once a
timing assertion in the test suite (a speed target belongs here, not in a test): best of
``--repeats`` calls on a 128-image CIFAR batch, on one thread, against the naive per-image
loop. Target: a small fraction of a ~100 ms ResNet-20 CPU training step (about 1 ms).
Usage::

    python benchmarks/crop_flip.py [--batch-size 128 --repeats 10 --threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from deepres.data import random_crop_flip


def per_image(images: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """The naive reference: pad, crop and maybe flip each image on its own."""
    h, w = images.shape[2:]
    padded = F.pad(images, (padding,) * 4)
    out = []
    for image in padded:
        oy, ox = torch.randint(0, 2 * padding + 1, (2,), generator=g).tolist()
        crop = image[:, oy : oy + h, ox : ox + w]
        out.append(crop.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else crop)
    return torch.stack(out)


def best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randint(0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    batched = best_seconds(lambda: random_crop_flip(x, 4, g), args.repeats)
    naive = best_seconds(lambda: per_image(x, 4, g), args.repeats)
    print(f"random_crop_flip: {batched * 1e3:.2f} ms per {args.batch_size}-image batch "
          f"(per-image loop {naive * 1e3:.2f} ms, {naive / batched:.1f}x), "
          f"{args.threads} thread(s), best of {args.repeats}")  # fmt: skip


if __name__ == "__main__":
    main()
