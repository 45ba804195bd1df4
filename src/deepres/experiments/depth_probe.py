"""One training measurement of the extreme-depth experiment, run in a fresh interpreter so that
its peak memory is its own: ``python -m deepres.experiments.depth_probe NET BATCH CHANS SIZE
CLASSES CKPT ITERS THREADS DEVICE`` prints one JSON line (base_mb, peak_mb, iter_s, finite)."""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from deepres.models import create_model


def rss_mb() -> float:
    """Peak resident MiB; ru_maxrss survives exec (it starts at the parent's peak), so the
    kernel's VmHWM first."""
    try:
        with open("/proc/self/status") as status:
            return next(int(x.split()[1]) for x in status if x.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe(
    net: str,
    batch: int,
    chans: int,
    size: int,
    classes: int,
    checkpointing: bool,
    iters: int,
    threads: int,
    device: str,
) -> dict[str, Any]:
    """``iters`` SGD steps of ``net`` on one random batch: the memory before the first and
    at the peak (CPU: VmHWM; CUDA: allocated), the seconds of each step, a finite loss."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(net, num_classes=classes, in_chans=chans).to(device).train()
    model.set_grad_checkpointing(checkpointing)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, chans, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    cuda = device.startswith("cuda")
    base = torch.cuda.memory_allocated() / 2**20 if cuda else rss_mb()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb()
    finite = loss.isfinite().item()
    return {"base_mb": base, "peak_mb": peak, "iter_s": times, "finite": finite}


def main(argv: list[str] | None = None) -> int:
    """Parse the nine positional arguments, measure, print the result as one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    net, batch, chans, size, classes, ckpt, iters, threads, device = args[:9]
    numbers = [int(batch), int(chans), int(size), int(classes)]
    result = probe(net, *numbers, ckpt == "1", int(iters), int(threads), device)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
