"""Data-parallel training on torch.distributed (launched by torchrun): one process per
device, DistributedDataParallel, gloo on CPUs and nccl on CUDA GPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn


@dataclass
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]


def setup(device: str = "auto", threads: int | None = None) -> Context:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), pick the device
    and the thread count for this process's share of the CPU cores."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}" if world_size > 1 else "cuda"
        torch.cuda.set_device(torch.device(device))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_world))
    if world_size > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Context(rank, world_size, local_rank, device)


def teardown(ctx: Context) -> None:
    if ctx.world_size > 1 and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    if ctx.world_size == 1:
        return model
    device_ids = [torch.device(ctx.device).index] if ctx.device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_sum_tensor(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.world_size == 1:
        return values
    values = values.to(ctx.device)
    tdist.all_reduce(values)
    return values.cpu()


def all_sum(values: list[float], ctx: Context) -> list[float]:
    """Element-wise sum of a few numbers over all processes."""
    return all_sum_tensor(torch.tensor(values, dtype=torch.float64), ctx).tolist()
